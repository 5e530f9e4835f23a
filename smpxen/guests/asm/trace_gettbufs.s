# trace_gettbufs: Domain-0 asks where the trace buffers are (DOM0_GETTBUFS) and
# prints the answer ("gettbufs" = the result, 0 or -ENODATA; "tbuf_maddr", the
# machine address of PCPU 0's buffer; "tbuf_size", the bytes of each), then asks
# DOM0_SCHED_ID (another traced dom0_op), yields and makes N null hypercalls
# (N = the first number of the command line, default 10) so a trace has
# something to show. The union of dom0_op_t starts at op + 8. (Offsets are
# literal numbers: keystone drops the label from "[label + SYMBOL]".)

.equ HYPERVISOR_dom0_op, 7
.equ HYPERVISOR_sched_op, 6
.equ SCHEDOP_yield, 0
.equ DOM0_INTERFACE_VERSION, 0xAAAA0019
.equ DOM0_GETTBUFS, 21
.equ DOM0_SCHED_ID, 24

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz tg_have_count
    mov eax, 10
tg_have_count:
    mov [count], eax

    mov dword ptr [op + 8], 0xdeadbeef       # OUT fields: Xen writes them either way
    mov dword ptr [op + 16], 0xdeadbeef
    mov dword ptr [op], DOM0_GETTBUFS
    call do_op
    mov esi, t_gettbufs
    call report
    mov eax, [op + 8]
    mov esi, t_maddr
    call report
    mov eax, [op + 16]
    mov esi, t_size
    call report

    mov dword ptr [op], DOM0_SCHED_ID
    call do_op
    mov esi, t_sched_id
    call report

    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    int 0x82

    mov edi, [count]
tg_loop:
    mov eax, HYPERVISOR_xen_version
    xor ebx, ebx
    push edi
    int 0x82
    pop edi
    dec edi
    jnz tg_loop
    mov eax, [count]
    mov esi, t_hypercalls
    call report
    ret

# do_op: dom0_op(op) with the current interface version -> EAX
do_op:
    mov dword ptr [op + 4], DOM0_INTERFACE_VERSION
    mov eax, HYPERVISOR_dom0_op
    mov ebx, op
    int 0x82
    ret

count: .long 0
t_gettbufs: .asciz "gettbufs"
t_maddr: .asciz "tbuf_maddr"
t_size: .asciz "tbuf_size"
t_sched_id: .asciz "sched_id"
t_hypercalls: .asciz "null_hypercalls"
.align 16
op: .space 80
.space 4096
boot_stack_top:
