# evtchn_pingpong: bounce an event between two domains (or within one) N times.
# Command line "self=D peer=P count=N" (D from the {domid} template).
#  - self < peer, the responder: alloc_unbound(P) first thing, which Xen gives the
#    lowest free port, PP_PORT (port 0 is VIRQ_MISDIRECT); waits for each ping and
#    answers it.
#  - self > peer, the initiator: bind_interdomain(SELF, any, P, PP_PORT), retried
#    (yielding) until P's unbound port exists, so the handshake does not depend on
#    who boots first; then sends a ping and waits for the pong, N times, and keeps
#    a 1-us histogram of the round trips (rdtsc) for the median and p99.
#  - self == peer: loopback, one domain both ends of a channel (send on the first
#    port, the upcall comes on the second, on return from the send hypercall).
# Every wait blocks (SCHEDOP_block) until the event handler, called from the
# XenLinux-style upcall in runtime.s, clears `outstanding`; set_timer_op bounds it:
# a timeout counts as lost (the initiator then pings again). An event on our port
# while nothing was outstanding counts as a duplicate. Prints received, duplicates,
# lost, rounds, elapsed_us (and rtt_median_us, rtt_p99_us for the initiator).

.equ PP_PORT, 1
.equ TIMEOUT_MS, 10000     # long: a stalled host must not pass for a lost event
.equ MAX_LOST, 3
.equ NR_BUCKETS, 16384

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
    mov [count], eax
    call tsc_per_us
    mov [cyc_per_us], eax
    mov eax, [self_id]
    cmp eax, [peer_id]
    je pp_loopback
    jb pp_responder

# ---- initiator: bind to the responder's port, retrying until it exists
    mov eax, [peer_id]
    mov edx, PP_PORT
    call evtchn_bind_retry
    test eax, eax
    js pp_bind_error
pp_bound:
    mov [send_port], eax
    mov [recv_port], eax
    jmp pp_initiate
pp_loopback:
    mov eax, DOMID_SELF
    xor edx, edx
    call evtchn_bind_interdomain
    test eax, eax
    js pp_bind_error
    mov [send_port], eax
    mov eax, [evtchn_op_buf + 16]
    mov [recv_port], eax

pp_initiate:
    call start_clock
pp_ping:
    mov eax, [rounds]
    cmp eax, [count]
    jae pp_finish
    rdtsc
    mov [t_ping], eax
    mov dword ptr [outstanding], 1
    mov eax, [send_port]
    call evtchn_send
    test eax, eax
    jnz pp_send_error
    mov ebx, outstanding
    mov eax, TIMEOUT_MS
    call block_until_zero
    test eax, eax
    jz pp_ping_lost
    rdtsc
    sub eax, [t_ping]
    call record_rtt
    inc dword ptr [rounds]
    jmp pp_ping
pp_ping_lost:
    mov dword ptr [outstanding], 0
    inc dword ptr [lost]
    cmp dword ptr [lost], MAX_LOST
    jb pp_ping
    jmp pp_finish

# ---- responder: offer a port to the peer, then answer every ping. Ready for the
# first ping before the port exists: the peer may bind and ping at once, and the
# upcall that brings it may come on the return of any hypercall from here on.
pp_responder:
    mov dword ptr [send_port], PP_PORT
    mov dword ptr [recv_port], PP_PORT
    mov dword ptr [outstanding], 1
    mov eax, [peer_id]
    call evtchn_alloc_unbound
    push eax
    mov esi, t_port
    call report
    pop eax
    cmp eax, PP_PORT
    jne pp_bind_error
    call start_clock
pp_answer:
    mov eax, [rounds]
    cmp eax, [count]
    jae pp_finish
    mov ebx, outstanding
    mov eax, TIMEOUT_MS
    call block_until_zero
    test eax, eax
    jz pp_answer_lost
    inc dword ptr [rounds]
    mov eax, [rounds]
    cmp eax, [count]
    jae pp_pong                   # the last ping: expect nothing more
    mov dword ptr [outstanding], 1
pp_pong:
    mov eax, [send_port]
    call evtchn_send
    test eax, eax
    jnz pp_send_error
    jmp pp_answer
pp_answer_lost:
    inc dword ptr [lost]
    cmp dword ptr [lost], MAX_LOST
    jb pp_answer

pp_finish:
    rdtsc
    sub eax, [t_start]
    sbb edx, [t_start + 4]
    div dword ptr [cyc_per_us]
    mov [elapsed_us], eax
    mov esi, t_received
    mov eax, [received]
    call report
    mov esi, t_duplicates
    mov eax, [duplicates]
    call report
    mov esi, t_lost
    mov eax, [lost]
    call report
    mov esi, t_rounds
    mov eax, [rounds]
    call report
    mov esi, t_elapsed
    mov eax, [elapsed_us]
    call report
    mov eax, [self_id]
    cmp eax, [peer_id]
    jb pp_done
    mov esi, t_bind_retries
    mov eax, [evtchn_bind_retries]
    call report
    mov eax, 50
    call percentile
    mov esi, t_median
    call report
    mov eax, 99
    call percentile
    mov esi, t_p99
    call report
pp_done:
    ret
pp_send_error:
    mov esi, t_send_error
    call report
    ret
pp_bind_error:
    mov esi, t_bind_error
    call report
    ret

# The event handler (EAX = port, from evtchn_upcall).
on_port:
    cmp eax, [recv_port]
    jne on_port_other
    inc dword ptr [received]
    cmp dword ptr [outstanding], 0
    je on_port_dup
    mov dword ptr [outstanding], 0
    ret
on_port_dup:
    inc dword ptr [duplicates]
on_port_other:
    ret                           # port 0: timer wake-ups and other VIRQs

start_clock:
    rdtsc
    mov [t_start], eax
    mov [t_start + 4], edx
    ret

# record_rtt(EAX = cycles): one more sample in the microsecond histogram.
record_rtt:
    xor edx, edx
    div dword ptr [cyc_per_us]
    cmp eax, NR_BUCKETS - 1
    jbe rr_in
    mov eax, NR_BUCKETS - 1
rr_in:
    inc dword ptr [hist + eax*4]
    ret

# percentile(EAX = p) -> EAX = the smallest bucket (us) holding at least
# ceil(p% of the samples): nearest-rank percentile of the round trips.
percentile:
    mul dword ptr [rounds]
    add eax, 99
    mov ecx, 100
    div ecx
    mov ecx, eax
    xor eax, eax
    xor edx, edx
pc_loop:
    add edx, [hist + eax*4]
    cmp edx, ecx
    jae pc_done
    inc eax
    cmp eax, NR_BUCKETS
    jb pc_loop
pc_done:
    ret

t_port: .asciz "port"
t_received: .asciz "received"
t_duplicates: .asciz "duplicates"
t_lost: .asciz "lost"
t_rounds: .asciz "rounds"
t_elapsed: .asciz "elapsed_us"
t_bind_retries: .asciz "bind_retries"
t_median: .asciz "rtt_median_us"
t_p99: .asciz "rtt_p99_us"
t_bind_error: .asciz "bind_error"
t_send_error: .asciz "send_error"
.align 4
self_id: .long 0
peer_id: .long 0
count: .long 0
cyc_per_us: .long 0
send_port: .long -1
recv_port: .long -1            # no port yet: port 0 (VIRQ_MISDIRECT) may fire before we bind
outstanding: .long 0
received: .long 0
duplicates: .long 0
lost: .long 0
rounds: .long 0
elapsed_us: .long 0
t_ping: .long 0
t_start: .long 0, 0
hist: .space 65536
.align 4096
shinfo_page: .space 4096
.space 4096
boot_stack_top:
