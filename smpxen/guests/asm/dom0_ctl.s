# dom0_ctl: exercises the Domain-0 control interface (dom0_op) on domain 1 and
# prints one "name=result" line per check. Run it as Domain 0 with domain 1 a
# long-running guest on PCPU 0; a copy run unprivileged must see -EPERM.
# The union of dom0_op_t starts at op + 8. (Offsets are literal numbers: keystone
# drops the label from "[label + SYMBOL]" when SYMBOL is an .equ.)

.equ HYPERVISOR_dom0_op, 7
.equ DOM0_INTERFACE_VERSION, 0xAAAA0019
.equ DOM0_ADJUSTDOM, 7
.equ DOM0_PAUSEDOMAIN, 10
.equ DOM0_UNPAUSEDOMAIN, 11
.equ DOM0_GETDOMAININFO, 12
.equ DOM0_SETTIME, 17
.equ DOM0_PINCPUDOMAIN, 20
.equ DOM0_PHYSINFO, 22
.equ DOM0_SCHED_ID, 24

guest_main:
    # Not privileged? Report the refusal and stop.
    mov dword ptr [op], DOM0_SCHED_ID
    call do_op
    mov [first_rc], eax
    mov esi, t_sched_id
    call report
    cmp dword ptr [first_rc], 0
    jne done

    mov eax, [op + 8]
    mov esi, t_sched_id_value
    call report

    # a wrong interface version
    mov dword ptr [op], DOM0_SCHED_ID
    mov dword ptr [op + 4], 0x1234
    mov eax, HYPERVISOR_dom0_op
    mov ebx, op
    int 0x82
    mov esi, t_badversion
    call report

    mov dword ptr [op], DOM0_PHYSINFO
    call do_op
    mov eax, [op + 12]
    mov esi, t_cores
    call report

    # GETDOMAININFO for domain 1: processor in flags bits 8..15
    call info1
    mov esi, t_info
    call report
    mov eax, [op + 12]
    shr eax, 8
    and eax, 255
    mov esi, t_cpu_before
    call report
    mov eax, [op + 24]
    mov esi, t_tot_pages
    call report

    # ADJUSTDOM: get (default mcu_adv 10), put 25, get again
    call adj_get
    mov eax, [op + 24]
    mov esi, t_mcu_before
    call report
    mov dword ptr [op], DOM0_ADJUSTDOM
    mov dword ptr [op + 8], 0
    mov dword ptr [op + 12], 0
    mov word ptr [op + 16], 1
    mov dword ptr [op + 24], 25
    mov dword ptr [op + 28], 0
    mov dword ptr [op + 32], 0
    mov dword ptr [op + 36], 2000
    mov dword ptr [op + 40], 0
    mov dword ptr [op + 44], 1000
    mov dword ptr [op + 48], 0
    call do_op
    mov esi, t_adj_put
    call report
    call adj_get
    mov eax, [op + 24]
    mov esi, t_mcu_after
    call report

    # PAUSE domain 1: GETDOMAININFO shows DOMFLAGS_PAUSED (bit 3); then UNPAUSE
    mov dword ptr [op], DOM0_PAUSEDOMAIN
    mov word ptr [op + 8], 1
    call do_op
    mov esi, t_pause
    call report
    call info1
    mov eax, [op + 12]
    shr eax, 3
    and eax, 1
    mov esi, t_paused_flag
    call report
    mov dword ptr [op], DOM0_UNPAUSEDOMAIN
    mov word ptr [op + 8], 1
    call do_op
    mov esi, t_unpause
    call report
    # pausing ourselves is refused
    mov dword ptr [op], DOM0_PAUSEDOMAIN
    mov word ptr [op + 8], 0
    call do_op
    mov esi, t_pause_self
    call report

    # PINCPUDOMAIN: move domain 1 to PCPU 1, then wait until GETDOMAININFO says so
    mov dword ptr [op], DOM0_PINCPUDOMAIN
    mov word ptr [op + 8], 1
    mov dword ptr [op + 12], 1
    call do_op
    mov esi, t_pin
    call report
    mov dword ptr [tries], 2000
wait_moved:
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    int 0x82
    call info1
    mov eax, [op + 12]
    shr eax, 8
    and eax, 255
    cmp eax, 1
    je moved
    dec dword ptr [tries]
    jnz wait_moved
moved:
    mov esi, t_cpu_after
    call report

    # SETTIME
    mov dword ptr [op], DOM0_SETTIME
    mov dword ptr [op + 8], 1000000000
    mov dword ptr [op + 12], 0
    mov dword ptr [op + 16], 0
    mov dword ptr [op + 20], 0
    call do_op
    mov esi, t_settime
    call report

    # an unknown domain
    mov dword ptr [op], DOM0_PAUSEDOMAIN
    mov word ptr [op + 8], 77
    call do_op
    mov esi, t_nosuch
    call report
done:
    ret

# do_op: dom0_op(op) with the current interface version -> EAX
do_op:
    mov dword ptr [op + 4], DOM0_INTERFACE_VERSION
    mov eax, HYPERVISOR_dom0_op
    mov ebx, op
    int 0x82
    ret

info1:
    mov dword ptr [op], DOM0_GETDOMAININFO
    mov word ptr [op + 8], 1
    mov dword ptr [op + 16], 0      # no ctxt: the hypervisor would write one there
    call do_op
    ret

adj_get:
    mov dword ptr [op], DOM0_ADJUSTDOM
    mov dword ptr [op + 8], 0
    mov dword ptr [op + 12], 1
    mov word ptr [op + 16], 1
    call do_op
    ret

tries: .long 0
first_rc: .long 0
t_sched_id: .asciz "sched_id"
t_sched_id_value: .asciz "sched_id_value"
t_badversion: .asciz "bad_version"
t_cores: .asciz "cores"
t_info: .asciz "getdomaininfo"
t_cpu_before: .asciz "cpu_before"
t_tot_pages: .asciz "tot_pages"
t_mcu_before: .asciz "mcu_before"
t_adj_put: .asciz "adjust_put"
t_mcu_after: .asciz "mcu_after"
t_pause: .asciz "pause"
t_paused_flag: .asciz "paused_flag"
t_unpause: .asciz "unpause"
t_pause_self: .asciz "pause_self"
t_pin: .asciz "pin"
t_cpu_after: .asciz "cpu_after"
t_settime: .asciz "settime"
t_nosuch: .asciz "pause_nosuch"
.align 16
op: .space 80
.space 4096
boot_stack_top:
