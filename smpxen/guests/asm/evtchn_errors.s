# evtchn_errors: event_channel_op as a guest sees it, and VIRQ_DOM_EXC.
# Command line "self=D peer=P". Run it as Domain-0 (self=0) and as one domU (peer=0).
#  - Domain-0 binds VIRQ_DOM_EXC (port 1), offers port 2 to the domU with
#    alloc_unbound, checks the domU's side of the channel with a privileged status,
#    then blocks until VIRQ_DOM_EXC arrives (the domU shut down).
#  - The domU binds to Domain-0's port 2 (retrying until it is offered, so Domain-0
#    is listening for VIRQ_DOM_EXC before the domU can end), checks the error cases,
#    a loopback channel, then powers off.
# One "name=value" line per check (errno values are negative); the test asserts them.

.equ DOM0_OFFER_PORT, 2
.equ WAIT_MS, 10000

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
    cmp dword ptr [self_id], 0
    jne domu_main

# ---- Domain-0
    mov eax, VIRQ_DOM_EXC
    call evtchn_bind_virq
    mov [watch_port], eax
    mov esi, t_dom0_dom_exc_port
    call report
    mov eax, [peer_id]
    call evtchn_alloc_unbound
    mov esi, t_dom0_offer_port
    call report
    mov dword ptr [waiting], 1
    mov ebx, waiting
    mov eax, WAIT_MS
    call block_until_zero
    mov esi, t_dom0_dom_exc_seen
    call report
    mov eax, [events]
    mov esi, t_dom0_dom_exc_events
    call report
    # the domU's end of our channel (privileged status of another domain's port)
    mov eax, [peer_id]
    mov edx, 1
    call do_status
    mov esi, t_dom0_status_peer
    call report
    mov eax, [evtchn_op_buf + 16]
    mov esi, t_dom0_status_peer_state
    call report
    ret

# ---- the unprivileged domain
domu_main:
    xor eax, eax
    mov edx, DOM0_OFFER_PORT
    call evtchn_bind_retry
    mov esi, t_handshake_port
    call report
    mov eax, DOMID_SELF
    xor edx, edx
    call do_close
    mov esi, t_close_port0
    call report
    mov eax, DOMID_SELF
    mov edx, 5000
    call do_close
    mov esi, t_close_out_of_range
    call report
    mov eax, DOMID_SELF
    mov edx, 100
    call do_close
    mov esi, t_close_free
    call report
    xor eax, eax
    mov edx, 1
    call do_close
    mov esi, t_close_other_domain
    call report
    xor eax, eax
    call evtchn_send
    mov esi, t_send_port0
    call report
    mov eax, 50
    call evtchn_send
    mov esi, t_send_free
    call report
    mov eax, DOMID_SELF
    call evtchn_alloc_unbound
    mov [unbound_port], eax
    call evtchn_send
    mov esi, t_send_unbound
    call report
    mov eax, DOMID_SELF
    mov edx, [unbound_port]
    call do_status
    mov eax, [evtchn_op_buf + 16]
    mov esi, t_status_unbound
    call report
    movzx eax, word ptr [evtchn_op_buf + 20]
    mov esi, t_status_unbound_dom
    call report
    mov eax, DOMID_SELF
    mov edx, 2000
    call do_status
    mov esi, t_status_out_of_range
    call report
    xor eax, eax
    xor edx, edx
    call do_status
    mov esi, t_status_other_domain
    call report

    mov eax, 7
    call evtchn_bind_virq
    mov esi, t_bind_virq_range
    call report
    mov eax, 2
    call evtchn_bind_virq
    mov [virq_port], eax
    mov eax, 2
    call evtchn_bind_virq
    cmp eax, [virq_port]
    sete al
    movzx eax, al
    mov esi, t_bind_virq_twice_same
    call report
    xor eax, eax
    call evtchn_bind_virq
    mov esi, t_bind_virq_misdirect
    call report

    # bind_interdomain: dom1 must be SELF; a free port of another domain is not ours
    mov word ptr [evtchn_op_buf + 8], 0
    mov word ptr [evtchn_op_buf + 10], DOMID_SELF
    mov dword ptr [evtchn_op_buf + 12], 0
    mov dword ptr [evtchn_op_buf + 16], 0
    mov eax, EVTCHNOP_bind_interdomain
    call evtchn_op
    mov esi, t_bind_dom1_not_self
    call report
    xor eax, eax
    mov edx, 7
    call evtchn_bind_interdomain
    mov esi, t_bind_free_remote
    call report
    mov eax, 99
    call evtchn_alloc_unbound
    mov esi, t_alloc_no_domain
    call report
    mov dword ptr [evtchn_op_buf + 8], 3
    mov eax, EVTCHNOP_bind_pirq
    call evtchn_op
    mov esi, t_bind_pirq
    call report
    mov dword ptr [evtchn_op_buf + 8], 200
    mov eax, EVTCHNOP_bind_pirq
    call evtchn_op
    mov esi, t_bind_pirq_range
    call report
    mov eax, 99
    call evtchn_op
    mov esi, t_unknown_cmd
    call report
    mov eax, HYPERVISOR_event_channel_op
    mov ebx, 0x1000
    int 0x82
    mov esi, t_bad_pointer
    call report

    # loopback: both ends ours; binding again returns the existing pair
    mov eax, DOMID_SELF
    xor edx, edx
    call evtchn_bind_interdomain
    mov [loop_a], eax
    mov eax, [evtchn_op_buf + 16]
    mov [loop_b], eax
    mov [watch_port], eax
    mov eax, [loop_a]
    cmp eax, [loop_b]
    setne al
    movzx eax, al
    mov esi, t_loopback_ports_differ
    call report
    mov word ptr [evtchn_op_buf + 8], DOMID_SELF
    mov word ptr [evtchn_op_buf + 10], DOMID_SELF
    mov eax, [loop_a]
    mov [evtchn_op_buf + 12], eax
    mov dword ptr [evtchn_op_buf + 16], 0
    mov eax, EVTCHNOP_bind_interdomain
    call evtchn_op
    mov eax, [evtchn_op_buf + 12]
    cmp eax, [loop_a]
    jne domu_rebind_differs
    mov eax, [evtchn_op_buf + 16]
    cmp eax, [loop_b]
domu_rebind_differs:
    sete al
    movzx eax, al
    mov esi, t_double_bind_same_pair
    call report
    mov dword ptr [waiting], 1
    mov eax, [loop_a]
    call evtchn_send
    mov ebx, waiting
    mov eax, WAIT_MS
    call block_until_zero
    mov esi, t_loopback_event
    call report
    mov eax, DOMID_SELF
    mov edx, [loop_a]
    call do_close
    mov esi, t_close_bound
    call report
    mov eax, DOMID_SELF
    mov edx, [loop_b]
    call do_status
    mov eax, [evtchn_op_buf + 16]
    mov esi, t_status_after_close
    call report
    mov eax, [loop_b]
    call evtchn_send
    mov esi, t_send_after_close
    call report
    mov eax, DOMID_SELF
    mov edx, [loop_a]
    call do_close
    mov esi, t_close_twice
    call report
    mov eax, [events]
    mov esi, t_events
    call report
    ret

# do_close(EAX = domain, EDX = port) -> EAX
do_close:
    mov [evtchn_op_buf + 8], ax
    mov [evtchn_op_buf + 12], edx
    mov eax, EVTCHNOP_close
    jmp evtchn_op

# do_status(EAX = domain, EDX = port) -> EAX; status at evtchn_op_buf + 16, its union at + 20
do_status:
    mov [evtchn_op_buf + 8], ax
    mov [evtchn_op_buf + 12], edx
    mov dword ptr [evtchn_op_buf + 16], 0xFFFFFFFF
    mov eax, EVTCHNOP_status
    jmp evtchn_op

# The event handler (EAX = port): count what arrives on the port we watch.
on_port:
    cmp eax, [watch_port]
    jne on_port_other
    inc dword ptr [events]
    mov dword ptr [waiting], 0
on_port_other:
    ret

t_dom0_dom_exc_port: .asciz "dom0_dom_exc_port"
t_dom0_offer_port: .asciz "dom0_offer_port"
t_dom0_dom_exc_seen: .asciz "dom0_dom_exc_seen"
t_dom0_dom_exc_events: .asciz "dom0_dom_exc_events"
t_dom0_status_peer: .asciz "dom0_status_peer"
t_dom0_status_peer_state: .asciz "dom0_status_peer_state"
t_handshake_port: .asciz "handshake_port"
t_close_port0: .asciz "close_port0"
t_close_out_of_range: .asciz "close_out_of_range"
t_close_free: .asciz "close_free"
t_close_other_domain: .asciz "close_other_domain"
t_send_port0: .asciz "send_port0"
t_send_free: .asciz "send_free"
t_send_unbound: .asciz "send_unbound"
t_status_unbound: .asciz "status_unbound"
t_status_unbound_dom: .asciz "status_unbound_dom"
t_status_out_of_range: .asciz "status_out_of_range"
t_status_other_domain: .asciz "status_other_domain"
t_bind_virq_range: .asciz "bind_virq_range"
t_bind_virq_twice_same: .asciz "bind_virq_twice_same"
t_bind_virq_misdirect: .asciz "bind_virq_misdirect"
t_bind_dom1_not_self: .asciz "bind_dom1_not_self"
t_bind_free_remote: .asciz "bind_free_remote"
t_alloc_no_domain: .asciz "alloc_no_domain"
t_bind_pirq: .asciz "bind_pirq"
t_bind_pirq_range: .asciz "bind_pirq_range"
t_unknown_cmd: .asciz "unknown_cmd"
t_bad_pointer: .asciz "bad_pointer"
t_loopback_ports_differ: .asciz "loopback_ports_differ"
t_double_bind_same_pair: .asciz "double_bind_same_pair"
t_loopback_event: .asciz "loopback_event"
t_close_bound: .asciz "close_bound"
t_status_after_close: .asciz "status_after_close"
t_send_after_close: .asciz "send_after_close"
t_close_twice: .asciz "close_twice"
t_events: .asciz "events"
.align 4
self_id: .long 0
peer_id: .long 0
watch_port: .long 0xFFFFFFFF
waiting: .long 0
events: .long 0
unbound_port: .long 0
virq_port: .long 0
loop_a: .long 0
loop_b: .long 0
.align 4096
shinfo_page: .space 4096
.space 4096
boot_stack_top:
