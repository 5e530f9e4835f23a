# mm_shootbench (Domain-0, for `smpxen bench`): ROUNDS rounds (first number on the
# command line) of: revoke one unmapped frame from every other domain (scanning
# down from frame TOP, the second number), then take them all back with one
# increase_reservation (one shootdown: the PCPUs that may cache any of them flush
# first) and give them back to the pool. Between the revocations and the reuse it
# spins DELAY iterations (third number), the time other PCPUs have to flush on
# their own. Prints rounds done and kilocycles.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov [rounds], eax
    call parse_uint
    mov [top], eax
    call parse_uint
    mov [delay], eax
    # Count the victims: domains 1.. until dom_mem_op says -ESRCH.
    mov ebx, 1
sb_count:
    mov dword ptr [extent], 0xFFFFFFF0          # not a frame: 0 extents, or -ESRCH
    mov eax, 12
    push ebx
    mov edi, ebx
    mov ebx, 1
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    int 0x82
    pop ebx
    cmp eax, -3
    je sb_counted
    mov eax, [top]
    mov [cursor + ebx * 4], eax
    inc ebx
    cmp ebx, 32
    jb sb_count
sb_counted:
    dec ebx
    mov [victims], ebx
    mov eax, ebx
    mov esi, t_victims
    call report
    # Room under max_pages for one frame per victim.
    call first_free_pfn
    mov esi, eax
    xor ecx, ecx
sb_room:
    lea eax, [esi + ecx]
    call pfn_to_mfn
    mov [list + ecx * 4], eax
    inc ecx
    cmp ecx, [victims]
    jb sb_room
    call sb_give_back

    call rdtsc_k
    mov [t0], eax
    xor edi, edi
sb_round:
    mov ebx, 1
sb_victim:
    mov eax, [cursor + ebx * 4]
sb_scan:
    dec eax
    jz sb_done
    mov [extent], eax
    push eax
    push ebx
    mov edi, ebx
    mov eax, 12
    mov ebx, 1
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    int 0x82
    mov edx, eax
    pop ebx
    pop eax
    cmp edx, 1
    jne sb_scan
    mov [cursor + ebx * 4], eax
    inc ebx
    cmp ebx, [victims]
    jbe sb_victim
    mov ecx, [delay]
    inc ecx
sb_delay:
    dec ecx
    jnz sb_delay
    # One shootdown: take them all back at once.
    mov eax, 12
    mov ebx, 0
    mov ecx, list
    mov edx, [victims]
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    cmp eax, [victims]
    jne sb_done
    call sb_give_back
    inc dword ptr [done]
    mov edi, [done]
    cmp edi, [rounds]
    jb sb_round
sb_done:
    call rdtsc_k
    sub eax, [t0]
    mov esi, t_kcycles
    call report
    mov eax, [done]
    mov esi, t_rounds
    call report
    ret

sb_give_back:
    mov eax, 12
    mov ebx, 1
    mov ecx, list
    mov edx, [victims]
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    ret

t_victims: .asciz "victims"
t_kcycles: .asciz "shootdown_kcycles"
t_rounds: .asciz "rounds"
.align 4
rounds: .long 0
top: .long 0
delay: .long 0
victims: .long 0
extent: .long 0
done: .long 0
t0: .long 0
cursor: .space 4 * 32
list: .space 4 * 32
.align 16
.space 4096
boot_stack_top:
