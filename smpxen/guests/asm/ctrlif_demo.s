# ctrlif_demo: the control interface end to end (the domain controller of Xen 2.0).
# As a domU it drives its control ring with the runtime's XenLinux-style driver
# (ctrl_if_rx): with console_io = "dom0" console_io is refused and everything it
# prints goes over the ring; each line of console input it is sent comes back as
# "input=<line>"; a memory request is served by the runtime's balloon and reported
# as "mem_target=<pages>", "mem_status=<1 reached, 0 short>", "tot_pages=<pages>";
# a shutdown request is reported as "shutdown_request=<reason>" (0 poweroff,
# 1 reboot, 2 suspend) and carried out with that reason.
# As Domain-0 it has no control interface: it binds VIRQ_CONSOLE and reads its
# console input with console_io(CONSOLEIO_read), echoing lines the same way, and
# powers off when it reads a line "halt".
# Command line "timeout=S": power off after S seconds with nothing to do
# ("idle_timeout=1"); 0 or none waits for ever.
# It prints "ready=1" once it listens.

.equ CONSOLEIO_read, 1
.equ READ_CHUNK, 64
.equ FOREVER_MS, 3600000

guest_main:
    mov ebx, shinfo_page
    mov eax, on_port
    call evtchn_init
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov ecx, 1000
    mul ecx
    test eax, eax
    jnz cd_timeout_set
    mov eax, FOREVER_MS
cd_timeout_set:
    mov [timeout_ms], eax
    mov dword ptr [ctrl_shutdown_deferred], 1
    mov esi, [start_info_ptr]
    test dword ptr [esi + START_INFO_FLAGS], SIF_INITDOMAIN
    jnz cd_dom0
    call ctrl_if_init
    inc eax                         # 0 ready -> 1, -1 none -> 0
    push eax
    mov esi, t_ctrl_if
    call report                     # (report clobbers EAX)
    pop eax
    test eax, eax
    jz cd_idle_out                  # nothing to listen to
    jmp cd_ready
cd_dom0:
    mov dword ptr [is_dom0], 1
    mov eax, VIRQ_CONSOLE
    call evtchn_bind_virq
    mov [virq_port], eax
    mov esi, t_virq_port
    call report
cd_ready:
    mov esi, t_ready
    mov eax, 1
    call report
cd_loop:
    mov dword ptr [work], 1
    call do_work
    mov ebx, work
    mov eax, [timeout_ms]
    call block_until_zero
    test eax, eax
    jnz cd_loop
    cmp dword ptr [timeout_ms], FOREVER_MS
    je cd_loop
cd_idle_out:
    mov esi, t_idle
    mov eax, 1
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown

# on_port(EAX = port), from the event upcall: wake the main loop for ours.
on_port:
    test eax, eax
    jz op_done
    cmp eax, [ctrl_port]
    je op_wake
    cmp eax, [virq_port]
    jne op_done
op_wake:
    mov dword ptr [work], 0
op_done:
    ret

# do_work: take what arrived, print it, act on it.
do_work:
    cmp dword ptr [is_dom0], 0
    jne dw_dom0
dw_ring:
    call ctrl_if_rx
    test eax, eax
    jz dw_lines
    call print_lines                # makes room for input left in the ring
    jmp dw_ring
dw_dom0:
    # console_io(CONSOLEIO_read) until empty, into the runtime's input buffer
    mov ecx, CTRL_INPUT_SIZE
    sub ecx, [ctrl_in_len]
    jz dw_lines
    cmp ecx, READ_CHUNK
    jbe dw_read
    mov ecx, READ_CHUNK
dw_read:
    mov eax, HYPERVISOR_console_io
    mov ebx, CONSOLEIO_read
    mov edx, [ctrl_in_len]
    add edx, ctrl_in_buf
    int 0x82
    test eax, eax
    jle dw_lines
    add [ctrl_in_len], eax
    jmp dw_dom0
dw_lines:
    call print_lines
    mov eax, [ctrl_mem_requests]
    cmp eax, [mem_seen]
    je dw_shutdown
    mov [mem_seen], eax
    mov esi, t_mem_target
    mov eax, [ctrl_mem_target]
    call report
    mov esi, t_mem_status
    mov eax, [ctrl_mem_status]
    call report
    mov esi, t_tot_pages
    mov eax, [bal_pages]
    call report
dw_shutdown:
    mov eax, [ctrl_shutdown_req]
    test eax, eax
    jz dw_done
    dec eax
    push eax
    mov esi, t_shutdown
    call report
    pop eax
    call shutdown
dw_done:
    ret

# print_lines: every complete line in ctrl_in_buf as "input=<line>" (CR or LF ends a
# line; an empty line is skipped); what follows the last one stays, unless it fills
# the buffer (then it is a line too). As Domain-0 a line "halt" powers off.
print_lines:
    cmp dword ptr [ctrl_in_len], CTRL_INPUT_SIZE
    jb pl_start
    mov byte ptr [ctrl_in_buf + 255], 10            # a full buffer: its last byte ends it
pl_start:
    xor ebx, ebx                    # start of the current line
    xor ecx, ecx                    # scan position
pl_scan:
    cmp ecx, [ctrl_in_len]
    jae pl_keep
    mov al, [ctrl_in_buf + ecx]
    cmp al, 10
    je pl_eol
    cmp al, 13
    je pl_eol
    inc ecx
    jmp pl_scan
pl_eol:
    mov edx, ecx
    sub edx, ebx
    jz pl_next
    cmp edx, 200
    jbe pl_copy
    mov edx, 200
pl_copy:
    push ecx
    lea esi, [ctrl_in_buf + ebx]
    mov edi, line_copy
    mov ecx, edx
    rep movsb
    mov byte ptr [edi], 0
    pop ecx
    call halt_check
    mov esi, t_input
    call line_puts
    mov esi, line_copy
    call line_puts
    mov esi, t_nl
    call line_puts
    call line_flush
pl_next:
    inc ecx
    mov ebx, ecx
    jmp pl_scan
pl_keep:
    # move the unfinished line to the front
    mov edx, [ctrl_in_len]
    sub edx, ebx
    lea esi, [ctrl_in_buf + ebx]
    mov edi, ctrl_in_buf
    mov ecx, edx
    rep movsb
    mov [ctrl_in_len], edx
    ret

# halt_check: Domain-0 powers off on the line "halt".
halt_check:
    cmp dword ptr [is_dom0], 0
    je hc_done
    cmp dword ptr [line_copy], 0x746c6168       # "halt"
    jne hc_done
    cmp byte ptr [line_copy + 4], 0
    jne hc_done
    mov esi, t_halting
    mov eax, 1
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown
hc_done:
    ret

t_ctrl_if: .asciz "ctrl_if"
t_virq_port: .asciz "virq_console_port"
t_ready: .asciz "ready"
t_idle: .asciz "idle_timeout"
t_input: .asciz "input="
t_nl: .asciz "\n"
t_mem_target: .asciz "mem_target"
t_mem_status: .asciz "mem_status"
t_tot_pages: .asciz "tot_pages"
t_shutdown: .asciz "shutdown_request"
t_halting: .asciz "halting"
.align 4
work: .long 0
timeout_ms: .long 0
is_dom0: .long 0
virq_port: .long 0
mem_seen: .long 0
line_copy: .space 208
.align 4096
shinfo_page: .space 4096
.align 16
.space 4096
boot_stack_top:
