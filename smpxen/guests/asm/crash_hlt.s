# crash_hlt: prints a line, then executes HLT in ring 1 -- a privileged instruction,
# so the CPU raises #GP. With no trap table registered the domain is crashed; the
# machine and every other domain carry on.

guest_main:
    mov esi, msg
    call line_puts
    call line_flush
    hlt
    mov esi, msg_after
    call line_puts
    call line_flush
    ret

msg: .asciz "about to hlt\n"
msg_after: .asciz "hlt did not fault\n"
.align 16
.space 4096
boot_stack_top:
