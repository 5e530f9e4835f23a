# timer_test: K times (K = first number of the command line, default 20), sets a
# one-shot timer D = 3 ms ahead with set_timer_op, blocks (upcalls masked from the
# time read to the block), and on wake-up reads system time; reports the mean and
# worst lateness in us and how many wake-ups came early by more than Xen's 50 us
# timer slop, and the earliest of those (us before the deadline).

.equ DELAY_NS, 3000000

guest_main:
    mov ebx, shinfo_page
    mov [shared_va], ebx
    call map_shared_info
    mov esi, t_map
    call report
    mov eax, HYPERVISOR_set_callbacks
    mov ebx, FLAT_RING1_CS
    mov ecx, event_callback_ack
    mov edx, FLAT_RING1_CS
    mov esi, failsafe
    int 0x82
    mov esi, t_cb
    call report
    # Take what is pending from start of day (a tick VIRQ may have come before the
    # callback existed): otherwise the first block would return at once.
    call evtchn_unmask_upcalls
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz tt_have
    mov eax, 20
tt_have:
    mov [rounds], eax
tt_loop:
    # Upcalls are masked from reading the time to the block, as XenLinux's idle
    # loop does: if the PCPU is held up in between (a host stall of a few ms) and
    # the timer fires first, an upcall there would consume VIRQ_TIMER and the
    # block would sleep for good. SCHEDOP_block unmasks and returns at once with
    # the event pending, and the upcall comes on the way back.
    mov esi, [shared_va]
    mov byte ptr [esi + SI_UPCALL_MASK], 1
    call xen_time
    add eax, DELAY_NS
    adc edx, 0
    mov [dl_lo], eax
    mov [dl_hi], edx
tt_arm:
    mov ebx, [dl_hi]
    mov ecx, [dl_lo]
    mov eax, HYPERVISOR_set_timer_op
    int 0x82
    jmp tt_block
    # Was an event already pending (masked: the PCPU's 10 ms tick sends the
    # running domain VIRQ_TIMER too)? Then the block returns without sleeping.
    # The look and the block are one translation block (no branch between, and
    # aligned so that no page boundary splits them), and a slice ends only where
    # one begins, so nothing arrives between them unseen.
.align 64
tt_block:
    mov esi, [shared_va]
    mov al, [esi + SI_UPCALL_PENDING]
    mov [pending_before], al
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_block
    int 0x82
    mov esi, [shared_va]
    mov byte ptr [esi + SI_UPCALL_MASK], 1
    call xen_time
    # lateness = now - deadline (assume |lateness| < 2 s: use the low words)
    sub eax, [dl_lo]
    jns tt_late
    # Xen fires timers due within TIMER_SLOP (50 us) together: that early is on time.
    cmp eax, -50000
    jge tt_on_time
    # Before the deadline: a tick pending at the block (no sleep: wait again), or
    # our timer fired early (count it; re-arm for the same deadline and wait).
    cmp byte ptr [pending_before], 0
    jne tt_arm
    inc dword ptr [early]
    cmp eax, [worst_early]
    jge tt_arm
    mov [worst_early], eax
    jmp tt_arm
tt_on_time:
    xor eax, eax
tt_late:
    xor edx, edx
    mov ecx, 1000
    div ecx
    add [sum_us], eax
    cmp eax, [max_us]
    jbe tt_next
    mov [max_us], eax
tt_next:
    dec dword ptr [rounds]
    jnz tt_loop
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz tt_have2
    mov eax, 20
tt_have2:
    mov ecx, eax
    mov eax, [sum_us]
    xor edx, edx
    div ecx
    mov esi, t_mean
    call report
    mov eax, [max_us]
    mov esi, t_max
    call report
    mov eax, [early]
    mov esi, t_early
    call report
    mov eax, [worst_early]
    neg eax
    xor edx, edx
    mov ecx, 1000
    div ecx
    mov esi, t_worst_early
    call report
    ret
failsafe:
    mov eax, 99
    mov esi, t_failsafe
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown

rounds: .long 0
pending_before: .byte 0
.align 4
dl_lo: .long 0
dl_hi: .long 0
sum_us: .long 0
max_us: .long 0
early: .long 0
worst_early: .long 0          # most negative lateness in ns (0: none early)
t_map: .asciz "map_shared_info"
t_cb: .asciz "set_callbacks"
t_mean: .asciz "mean_late_us"
t_max: .asciz "max_late_us"
t_early: .asciz "early"
t_worst_early: .asciz "worst_early_us"
t_failsafe: .asciz "failsafe"
.align 4096
shinfo_page: .space 4096
.space 4096
boot_stack_top:
