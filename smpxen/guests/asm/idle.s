# idle: a kernel that only waits. It prints its command line, then blocks for ever:
# any event wakes it (the callback takes it) and it goes back to sleep. A Domain-0
# for a machine driven by `smpxen xm` (its control plane needs Domain-0 alive), and
# a small domain to create and destroy.

guest_main:
    mov ebx, shinfo_page
    mov [shared_va], ebx
    call map_shared_info
    mov eax, HYPERVISOR_set_callbacks
    mov ebx, FLAT_RING1_CS
    mov ecx, event_callback_ack
    mov edx, FLAT_RING1_CS
    mov esi, evtchn_failsafe
    int 0x82
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call line_puts
    mov esi, msg_newline
    call line_puts
    call line_flush
idle_loop:
    # SCHEDOP_block unmasks upcalls and returns at once if an event is pending.
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_block
    int 0x82
    jmp idle_loop

msg_newline: .asciz "\n"
.align 4096
shinfo_page:
.space 4096
.align 16
.space 4096
boot_stack_top:
