# mm_victim: the domain a frame is revoked from (shootdown test). It keeps reading
# the first word of its first kernel page (where its own code starts) and yields;
# if it ever reads anything but what was there at start, it prints stale_read=1.
# Once the page is revoked and every TLB flushed, its next read (or instruction
# fetch) faults: the domain ends with a page fault in that page. If nothing happens
# for the number of rounds on the command line (default 300000) it prints
# survived=1.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz vi_have
    mov eax, 300000
vi_have:
    mov ecx, eax
    mov edx, [0xC0000000]
vi_loop:
    mov eax, [0xC0000000]
    cmp eax, edx
    jne vi_stale
    mov eax, 6                       # sched_op(yield)
    xor ebx, ebx
    int 0x82
    dec ecx
    jnz vi_loop
    mov eax, 1
    mov esi, t_survived
    call report
    ret
vi_stale:
    mov eax, 1
    mov esi, t_stale
    call report
    ret

t_survived: .asciz "survived"
t_stale: .asciz "stale_read"
.align 16
.space 4096
boot_stack_top:
