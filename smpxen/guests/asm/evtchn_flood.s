# evtchn_flood: one domain floods another with events and its own console with text.
# Command line "self=D peer=P sends=N console=C":
#  - self < peer, the sink: offers port FLOOD_PORT to the peer (alloc_unbound) and
#    takes its events until none came for QUIET_MS; prints received (events its
#    handler found on the port: many sends coalesce into one).
#  - self > peer, the flooder: binds to the sink's port (retrying until it exists),
#    sends N events back to back, then writes C console chunks of CHUNK bytes;
#    prints sent and send_errors.

.equ FLOOD_PORT, 1
.equ QUIET_MS, 1000
.equ CHUNK, 4000

guest_main:
    mov ebx, shinfo_page
    mov eax, on_port
    call evtchn_init
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov [self_id], eax
    call parse_uint
    mov [peer_id], eax
    call parse_uint
    mov [sends], eax
    call parse_uint
    mov [chunks], eax
    mov eax, [self_id]
    cmp eax, [peer_id]
    jb fl_sink

# ---- the flooder
    mov eax, [peer_id]
    mov edx, FLOOD_PORT
    call evtchn_bind_retry
    test eax, eax
    js fl_bind_error
    mov [port], eax
    mov ecx, [sends]
fl_send:
    test ecx, ecx
    jz fl_console
    mov eax, [port]
    call evtchn_send
    test eax, eax
    jz fl_sent
    inc dword ptr [send_errors]
    jmp fl_next
fl_sent:
    inc dword ptr [sent]
fl_next:
    dec ecx
    jmp fl_send
fl_console:
    mov edi, chunk_buf                # CHUNK - 1 letters and a newline
    mov ecx, CHUNK - 1
    mov al, 0x66
    rep stosb
    mov byte ptr [edi], 10
    mov edi, [chunks]
fl_write:
    test edi, edi
    jz fl_report
    mov ecx, CHUNK
    mov edx, chunk_buf
    call console_write
    dec edi
    jmp fl_write
fl_report:
    mov esi, t_sent
    mov eax, [sent]
    call report
    mov esi, t_send_errors
    mov eax, [send_errors]
    call report
    ret

# ---- the sink
fl_sink:
    mov eax, [peer_id]
    call evtchn_alloc_unbound
    cmp eax, FLOOD_PORT
    jne fl_bind_error
fl_wait:
    mov dword ptr [outstanding], 1
    mov ebx, outstanding
    mov eax, QUIET_MS
    call block_until_zero
    test eax, eax
    jnz fl_wait                       # an event came: wait for more
    cmp dword ptr [received], 0
    je fl_wait                        # nothing yet: the flooder may not have started
    mov esi, t_received
    mov eax, [received]
    call report
    ret

fl_bind_error:
    mov esi, t_bind_error
    call report
    ret

# The event handler (EAX = port, from evtchn_upcall).
on_port:
    cmp eax, FLOOD_PORT
    jne on_port_other
    inc dword ptr [received]
    mov dword ptr [outstanding], 0
on_port_other:
    ret

t_sent: .asciz "sent"
t_send_errors: .asciz "send_errors"
t_received: .asciz "received"
t_bind_error: .asciz "bind_error"
.align 4
self_id: .long 0
peer_id: .long 0
sends: .long 0
chunks: .long 0
port: .long 0
sent: .long 0
send_errors: .long 0
received: .long 0
outstanding: .long 0
chunk_buf: .space 4096
.align 4096
shinfo_page: .space 4096
.space 4096
boot_stack_top:
