# timewatch: reads system time the XenLinux 2.0 way (shared_info stamp extrapolated
# with this CPU's rdtsc) N times (N = first number of the command line, default
# 200 000) and counts how often it went backwards, and by how much at most. Run it
# while the machine migrates it between PCPUs (smpxen up --migrate NAME:MS) to see
# what each time model shows a moving domain.

guest_main:
    mov ebx, shinfo_page
    mov [shared_va], ebx
    call map_shared_info
    mov esi, t_map
    call report
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz tw_have
    mov eax, 200000
tw_have:
    mov [count], eax
    mov esi, [shared_va]
    call xen_time
    mov [prev_lo], eax
    mov [prev_hi], edx
    mov ecx, [count]
tw_loop:
    push ecx
    mov esi, [shared_va]
    call xen_time
    pop ecx
    # now < prev ?  (64-bit unsigned compare)
    cmp edx, [prev_hi]
    ja tw_forward
    jb tw_back
    cmp eax, [prev_lo]
    jae tw_forward
tw_back:
    inc dword ptr [backwards]
    mov ebx, [prev_lo]
    sub ebx, eax
    cmp ebx, [max_back]
    jbe tw_forward_keep
    mov [max_back], ebx
tw_forward_keep:
tw_forward:
    mov [prev_lo], eax
    mov [prev_hi], edx
    dec ecx
    jnz tw_loop
    mov eax, [count]
    mov esi, t_reads
    call report
    mov eax, [backwards]
    mov esi, t_back
    call report
    mov eax, [max_back]
    mov esi, t_maxback
    call report
    ret

count: .long 0
prev_lo: .long 0
prev_hi: .long 0
backwards: .long 0
max_back: .long 0
t_map: .asciz "map_shared_info"
t_reads: .asciz "reads"
t_back: .asciz "backwards"
t_maxback: .asciz "max_back_ns"
.align 4096
shinfo_page: .space 4096
.space 4096
boot_stack_top:
