# hello: prints its command line and the PCPU it runs on, then powers off.
# With the default configs the command line names the domain id and name.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call line_puts
    mov esi, msg_on_pcpu
    call line_puts
    call pcpu_id
    call line_putdec
    mov esi, msg_newline
    call line_puts
    call line_flush
    mov eax, SHUTDOWN_poweroff
    call shutdown

msg_on_pcpu: .asciz " on pcpu "
msg_newline: .asciz "\n"
.align 16
.space 4096
boot_stack_top:
