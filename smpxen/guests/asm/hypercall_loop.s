# hypercall_loop: N null hypercalls (xen_version(0)), N = first number in the
# command line (default 100 000); prints the kilocycles the loop took.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz have_count
    mov eax, 100000
have_count:
    mov [count], eax
    call rdtsc_k
    mov [start_k], eax
    mov edi, [count]
hc_loop:
    mov eax, HYPERVISOR_xen_version
    xor ebx, ebx
    push edi
    int 0x82
    pop edi
    dec edi
    jnz hc_loop
    call rdtsc_k
    sub eax, [start_k]
    mov esi, t_kcycles
    call report
    mov eax, [count]
    mov esi, t_count
    call report
    ret

count: .long 0
start_k: .long 0
t_kcycles: .asciz "loop_kcycles"
t_count: .asciz "hypercalls"
.align 16
.space 4096
boot_stack_top:
