# mm_yielder: yields the number of times on its command line (default 20000), then
# powers off. Two of them on a PCPU alternate at every yield, so that PCPU keeps
# switching address spaces (and flushing its TLB), as a busy CPU does.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz my_have
    mov eax, 20000
my_have:
    mov ecx, eax
my_loop:
    push ecx
    mov eax, 6
    xor ebx, ebx
    int 0x82
    pop ecx
    dec ecx
    jnz my_loop
    ret

.align 16
.space 4096
boot_stack_top:
