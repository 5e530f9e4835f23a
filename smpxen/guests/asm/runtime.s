# smpxen bundled-guest runtime (Intel syntax, assembled by keystone at load time).
# Each bundled guest is this file followed by the guest's own source, assembled at
# VIRT_BASE. The guest defines guest_main; ESI holds the start_info pointer at entry
# (Xen 2.0 start of day). Hypercalls: EAX = number, EBX ECX EDX ESI EDI = arguments,
# all clobbered; result in EAX.

.equ HYPERVISOR_sched_op, 6
.equ HYPERVISOR_multicall, 13
.equ HYPERVISOR_xen_version, 17
.equ HYPERVISOR_console_io, 18
.equ HYPERVISOR_vm_assist, 21
.equ CONSOLEIO_write, 0
.equ SCHEDOP_yield, 0
.equ SCHEDOP_block, 1
.equ SCHEDOP_shutdown, 2
.equ SHUTDOWN_poweroff, 0
.equ SHUTDOWN_reboot, 1
.equ SHUTDOWN_suspend, 2
.equ START_INFO_CMDLINE, 64
.equ START_INFO_NR_PAGES, 0

.equ HYPERVISOR_set_callbacks, 4
.equ HYPERVISOR_update_va_mapping, 14
.equ HYPERVISOR_set_timer_op, 15
.equ UVMF_INVLPG, 2
.equ FLAT_RING1_CS, 0x0819
.equ START_INFO_SHARED_INFO, 8
# shared_info_t offsets (Xen 2.0)
.equ SI_UPCALL_PENDING, 0
.equ SI_UPCALL_MASK, 1
.equ SI_EVTCHN_PENDING, 4
.equ SI_PENDING_SEL, 132
.equ SI_CPU_FREQ, 264
.equ SI_TIME_VERSION1, 272
.equ SI_TIME_VERSION2, 276
.equ SI_TSC_TIMESTAMP, 280
.equ SI_SYSTEM_TIME, 288
.equ SI_EVTCHN_MASK, 136
.equ HYPERVISOR_event_channel_op, 16
.equ EVTCHNOP_bind_interdomain, 0
.equ EVTCHNOP_bind_virq, 1
.equ EVTCHNOP_bind_pirq, 2
.equ EVTCHNOP_close, 3
.equ EVTCHNOP_send, 4
.equ EVTCHNOP_status, 5
.equ EVTCHNOP_alloc_unbound, 6
.equ DOMID_SELF, 0x7FF0
.equ VIRQ_TIMER, 1
.equ VIRQ_DOM_EXC, 4
.equ EVTCHN_BIND_TRIES, 100000
.equ VIRQ_CONSOLE, 3
.equ HYPERVISOR_dom_mem_op, 12
.equ MEMOP_increase_reservation, 0
.equ MEMOP_decrease_reservation, 1
.equ MMU_MACHPHYS_UPDATE, 2
.equ START_INFO_FLAGS, 16
.equ START_INFO_CTRL_EVTCHN, 20
.equ SIF_INITDOMAIN, 2
# control_if_t in shared_info (Xen 2.0 io/domain_controller.h; control_if_t at byte
# 2048): offsets from the start of shared_info
.equ CI_TX_RING, 2048
.equ CI_RX_RING, 2560
.equ CI_TX_REQ_PROD, 3072
.equ CI_TX_RESP_PROD, 3076
.equ CI_RX_REQ_PROD, 3080
.equ CI_RX_RESP_PROD, 3084
.equ CONTROL_RING_SIZE, 8
.equ CONTROL_MSG_DATA, 60
.equ CONTROL_MSG_NO_ID, 0xFF
.equ CMSG_CONSOLE, 0
.equ CMSG_CONSOLE_DATA, 0
.equ CMSG_SHUTDOWN, 6
.equ CMSG_MEM_REQUEST, 7
.equ CMSG_MEM_REQUEST_SET, 0
.equ CTRL_SEND_TRIES, 1000
.equ CTRL_INPUT_SIZE, 256
.equ BALLOON_BATCH, 64
.equ INVALID_P2M_ENTRY, 0xFFFFFFFF

_start:
    cld
    mov [start_info_ptr], esi
    mov esp, boot_stack_top
    call guest_main
    # guest_main returned: power off
    xor eax, eax
    call shutdown

# shutdown(reason in EAX): sched_op(SCHEDOP_shutdown | reason << 8); never returns.
shutdown:
    mov ebx, eax
    shl ebx, 8
    or ebx, SCHEDOP_shutdown
    mov eax, HYPERVISOR_sched_op
    int 0x82
shutdown_spin:
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    int 0x82
    jmp shutdown_spin

# console_write(ECX = count, EDX = buffer) -> EAX: console_io; when that is refused
# (-EPERM: a domU under Xen's strict rule, console_io = "dom0"), the control
# interface's console instead, as a XenLinux domU's console does.
console_write:
    push ebx
    push ecx
    push edx
    mov ebx, CONSOLEIO_write
    mov eax, HYPERVISOR_console_io
    int 0x82
    pop edx
    pop ecx
    pop ebx
    cmp eax, -1                   # -EPERM (keystone reads '-SYMBOL' as memory)
    jne cw_done
    call ctrl_console_write
cw_done:
    ret

# line_puts(ESI = NUL-terminated string): append to the line buffer.
line_puts:
    push eax
    push edi
    mov edi, [line_len]
line_puts_loop:
    mov al, [esi]
    test al, al
    jz line_puts_done
    cmp edi, 250
    jae line_puts_done
    mov [line_buf + edi], al
    inc esi
    inc edi
    jmp line_puts_loop
line_puts_done:
    mov [line_len], edi
    pop edi
    pop eax
    ret

# line_putdec(EAX = unsigned value): append its decimal digits.
line_putdec:
    push eax
    push ebx
    push ecx
    push edx
    push esi
    mov esi, dec_end
    mov byte ptr [esi], 0
    mov ebx, 10
line_putdec_loop:
    xor edx, edx
    div ebx
    add dl, 0x30
    dec esi
    mov [esi], dl
    test eax, eax
    jnz line_putdec_loop
    call line_puts
    pop esi
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

# line_putint(EAX = signed value): append it in decimal, with a '-' if negative.
line_putint:
    push eax
    push esi
    test eax, eax
    jns line_putint_pos
    mov esi, minus_sign
    call line_puts
    neg eax
line_putint_pos:
    call line_putdec
    pop esi
    pop eax
    ret

# report(ESI = label, EAX = signed value): print one "label=value" line.
report:
    call line_puts
    push esi
    mov esi, equals_sign
    call line_puts
    pop esi
    call line_putint
    push esi
    mov esi, newline
    call line_puts
    pop esi
    call line_flush
    ret

# line_flush: write the buffer through console_io and empty it.
line_flush:
    push ecx
    push edx
    mov ecx, [line_len]
    mov edx, line_buf
    call console_write
    mov dword ptr [line_len], 0
    pop edx
    pop ecx
    ret

# pcpu_id -> EAX: the initial APIC id (CPUID leaf 1, EBX bits 31..24), which is how
# a guest learns which physical CPU runs it.
pcpu_id:
    push ebx
    push ecx
    push edx
    mov eax, 1
    cpuid
    mov eax, ebx
    shr eax, 24
    pop edx
    pop ecx
    pop ebx
    ret

# rdtsc_k -> EAX: the cycle counter in units of 1024 cycles (32 bits last ~35 min at 2 GHz).
rdtsc_k:
    push edx
    rdtsc
    shrd eax, edx, 10
    pop edx
    ret

# map_shared_info(EBX = page-aligned virtual address) -> EAX = hypercall result:
# update_va_mapping(va >> 12, start_info.shared_info | present | rw, UVMF_INVLPG),
# as the Xen 2.0 mini-os does.
map_shared_info:
    push ecx
    push edx
    push esi
    mov esi, [start_info_ptr]
    mov ecx, [esi + START_INFO_SHARED_INFO]
    or ecx, 3
    shr ebx, 12
    mov edx, UVMF_INVLPG
    mov eax, HYPERVISOR_update_va_mapping
    int 0x82
    pop esi
    pop edx
    pop ecx
    ret

# xen_time(ESI = mapped shared_info) -> EDX:EAX = system time in ns, as XenLinux 2.0
# computes it: a consistent copy of the time fields (retry while the two version
# counters differ), then system_time + the microseconds since tsc_timestamp by this
# CPU's rdtsc (negative deltas clamp to 0), using cpu_freq's quotient; then XenLinux's
# "up to date" test: if time_version2 moved since the copy, the domain was scheduled
# in again meanwhile (maybe on another PCPU, whose counter the rdtsc read), so redo.
xen_time:
    push ebx
    push ecx
    push edi
    push ebp
xen_time_retry:
    mov ebp, [esi + SI_TIME_VERSION2]
    mov edi, [esi + SI_TSC_TIMESTAMP]
    mov eax, [esi + SI_SYSTEM_TIME]
    mov [xt_stime_lo], eax
    mov eax, [esi + SI_SYSTEM_TIME + 4]
    mov [xt_stime_hi], eax
    mov eax, [esi + SI_CPU_FREQ]
    mov [xt_freq], eax
    mov eax, [esi + SI_CPU_FREQ + 4]
    mov [xt_freq_hi], eax
    cmp ebp, [esi + SI_TIME_VERSION1]
    jne xen_time_retry
    # quotient = (1000 << 32) / cpu_khz, cpu_khz = cpu_freq / 1000: the u64 cpu_freq
    # (XenLinux's do_div), so counters of 2^32 Hz and more give the right rate
    mov eax, [xt_freq]
    mov edx, [xt_freq_hi]
    mov ecx, 1000
    div ecx
    mov ecx, eax
    mov edx, 1000
    xor eax, eax
    div ecx
    mov ecx, eax
    # delta = (u32)rdtsc - (u32)tsc_timestamp, clamped at 0
    rdtsc
    sub eax, edi
    jns xen_time_pos
    xor eax, eax
xen_time_pos:
    mul ecx
    mov eax, edx
    mov ecx, 1000
    mul ecx
    add eax, [xt_stime_lo]
    adc edx, [xt_stime_hi]
    cmp ebp, [esi + SI_TIME_VERSION2]
    jne xen_time_retry
    pop ebp
    pop edi
    pop ecx
    pop ebx
    ret

# The event callback for guests that only need to be woken: clear what is pending
# (every VIRQ they get arrives on port 0 or the port they bound), unmask, return.
event_callback_ack:
    push eax
    mov eax, [shared_va]
    mov byte ptr [eax + SI_UPCALL_PENDING], 0
    mov dword ptr [eax + SI_PENDING_SEL], 0
    mov dword ptr [eax + SI_EVTCHN_PENDING], 0
    mov byte ptr [eax + SI_UPCALL_MASK], 0
    pop eax
    iretd

# ---- event channels (Xen 2.0 event_channel_op; the union of evtchn_op_t is at +8) ----

# evtchn_init(EBX = page-aligned VA for shared_info, EAX = port handler) -> EAX =
# set_callbacks result: maps shared_info there, registers evtchn_upcall as the event
# callback (and evtchn_failsafe), and unmasks upcalls (they are masked at start of day).
# The handler is called from the upcall with EAX = port; it may clobber EAX..EDI.
evtchn_init:
    mov [evtchn_port_handler], eax
    mov [shared_va], ebx
    call map_shared_info
    push ebx
    push ecx
    push edx
    push esi
    mov eax, HYPERVISOR_set_callbacks
    mov ebx, FLAT_RING1_CS
    mov ecx, evtchn_upcall
    mov edx, FLAT_RING1_CS
    mov esi, evtchn_failsafe
    int 0x82
    mov esi, [shared_va]
    mov byte ptr [esi + SI_UPCALL_MASK], 0
    pop esi
    pop edx
    pop ecx
    pop ebx
    ret

# The event callback, as XenLinux 2.0's evtchn_do_upcall: while upcall_pending, clear
# it, take pending_sel with xchg, and for every port pending & ~mask in the selected
# words clear its pending bit and call [evtchn_port_handler] (EAX = port). Upcalls
# stay masked meanwhile (Xen set upcall_mask); unmask them on the way out.
evtchn_upcall:
    pushad
    mov esi, [shared_va]
eu_again:
    mov byte ptr [esi + SI_UPCALL_PENDING], 0
    xor ebx, ebx
    xchg ebx, [esi + SI_PENDING_SEL]
eu_word:
    bsf ecx, ebx
    jz eu_words_done
    btr ebx, ecx
eu_port:
    mov edx, [esi + SI_EVTCHN_MASK + ecx*4]
    not edx
    and edx, [esi + SI_EVTCHN_PENDING + ecx*4]
    bsf edx, edx
    jz eu_word
    btr dword ptr [esi + SI_EVTCHN_PENDING + ecx*4], edx
    mov eax, ecx
    shl eax, 5
    add eax, edx
    push ebx
    push ecx
    push esi
    mov edx, [evtchn_port_handler]
    test edx, edx
    jz eu_no_handler
    call edx
eu_no_handler:
    pop esi
    pop ecx
    pop ebx
    jmp eu_port
eu_words_done:
    cmp byte ptr [esi + SI_UPCALL_PENDING], 0
    jne eu_again
    mov byte ptr [esi + SI_UPCALL_MASK], 0
    popad
    iretd

# The failsafe callback (a segment reload or iret into this domain faulted): say so
# and power off.
evtchn_failsafe:
    mov ax, 0x0821
    mov ds, ax
    mov es, ax
    mov esi, t_failsafe_rt
    mov eax, 1
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown

# evtchn_op(EAX = EVTCHNOP_* command) -> EAX: event_channel_op on evtchn_op_buf, whose
# union (evtchn_op_buf + 8) the caller filled.
evtchn_op:
    push ebx
    mov [evtchn_op_buf], eax
    mov eax, HYPERVISOR_event_channel_op
    mov ebx, evtchn_op_buf
    int 0x82
    pop ebx
    ret

# evtchn_send(EAX = local port) -> EAX
evtchn_send:
    mov [evtchn_op_buf + 8], eax
    mov eax, EVTCHNOP_send
    jmp evtchn_op

# evtchn_bind_virq(EAX = virq) -> EAX = port, or -errno
evtchn_bind_virq:
    mov [evtchn_op_buf + 8], eax
    mov eax, EVTCHNOP_bind_virq
    call evtchn_op
    test eax, eax
    js ebv_done
    mov eax, [evtchn_op_buf + 12]
ebv_done:
    ret

# evtchn_alloc_unbound(EAX = domain allowed to bind) -> EAX = port, or -errno
evtchn_alloc_unbound:
    mov [evtchn_op_buf + 8], eax
    mov eax, EVTCHNOP_alloc_unbound
    call evtchn_op
    test eax, eax
    js eau_done
    mov eax, [evtchn_op_buf + 12]
eau_done:
    ret

# evtchn_bind_interdomain(EAX = remote domain, EDX = remote port, 0 = any) -> EAX =
# our new port (any free one), or -errno; the remote port is at evtchn_op_buf + 16.
evtchn_bind_interdomain:
    mov word ptr [evtchn_op_buf + 8], DOMID_SELF
    mov [evtchn_op_buf + 10], ax
    mov dword ptr [evtchn_op_buf + 12], 0
    mov [evtchn_op_buf + 16], edx
    mov eax, EVTCHNOP_bind_interdomain
    call evtchn_op
    test eax, eax
    js ebi_done
    mov eax, [evtchn_op_buf + 12]
ebi_done:
    ret

# evtchn_bind_retry(EAX = remote domain, EDX = its port) -> EAX = our port, or -errno
# after EVTCHN_BIND_TRIES refusals: bind_interdomain, yielding between tries, until
# the remote domain has offered that port to us with alloc_unbound. A handshake that
# does not depend on who boots first; evtchn_bind_retries counts the refusals.
evtchn_bind_retry:
    push ebx
    push ecx
    push esi
    mov esi, eax
    mov ecx, EVTCHN_BIND_TRIES
ebr_try:
    mov eax, esi
    call evtchn_bind_interdomain
    test eax, eax
    jns ebr_done
    inc dword ptr [evtchn_bind_retries]
    push eax
    push ecx
    push edx
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    int 0x82
    pop edx
    pop ecx
    pop eax
    dec ecx
    jnz ebr_try
ebr_done:
    pop esi
    pop ecx
    pop ebx
    ret

# block_until_zero(EBX = address of a dword, EAX = timeout in ms) -> EAX = 1 once
# the dword is 0 (an event handler cleared it), 0 if the timeout passed first.
# Blocks with SCHEDOP_block; set_timer_op arms the wake-up for the timeout (Xen
# delivers it as VIRQ_TIMER). Any other event just wakes us to look again.
# Upcalls are masked from the check to the block, as XenLinux's idle loop does
# (__cli; if nothing to do, block): an upcall in between would consume the event
# and we would sleep until the timeout. SCHEDOP_block unmasks and returns at once
# if an event is pending.
block_until_zero:
    push ecx
    push edx
    push esi
    cmp dword ptr [ebx], 0
    je buz_done
    mov ecx, 1000000
    mul ecx
    mov [buz_deadline], eax
    mov [buz_deadline + 4], edx
    mov esi, [shared_va]
    call xen_time
    add [buz_deadline], eax
    adc [buz_deadline + 4], edx
    push ebx
    mov ebx, [buz_deadline + 4]
    mov ecx, [buz_deadline]
    mov eax, HYPERVISOR_set_timer_op
    int 0x82
    pop ebx
buz_loop:
    mov esi, [shared_va]
    mov byte ptr [esi + SI_UPCALL_MASK], 1
    cmp dword ptr [ebx], 0
    je buz_unmask
    push ebx
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_block
    int 0x82
    pop ebx
    cmp dword ptr [ebx], 0
    je buz_done
    mov esi, [shared_va]
    call xen_time
    cmp edx, [buz_deadline + 4]
    jb buz_loop
    ja buz_timeout
    cmp eax, [buz_deadline]
    jb buz_loop
buz_timeout:
    xor eax, eax
    jmp buz_out
buz_unmask:
    call evtchn_unmask_upcalls
buz_done:
    mov eax, 1
buz_out:
    pop esi
    pop edx
    pop ecx
    ret

# evtchn_unmask_upcalls: XenLinux's __sti: clear the upcall mask; if an event came
# meanwhile, any hypercall makes Xen deliver it on the way back (xen_version here).
evtchn_unmask_upcalls:
    push eax
    push esi
    mov esi, [shared_va]
    mov byte ptr [esi + SI_UPCALL_MASK], 0
    cmp byte ptr [esi + SI_UPCALL_PENDING], 0
    je euu_done
    push ebx
    mov eax, HYPERVISOR_xen_version
    xor ebx, ebx
    int 0x82
    pop ebx
euu_done:
    pop esi
    pop eax
    ret

# tsc_per_us -> EAX: cycle-counter ticks per microsecond (shared_info cpu_freq / 10^6).
tsc_per_us:
    push ecx
    push edx
    push esi
    mov esi, [shared_va]
    mov eax, [esi + SI_CPU_FREQ]
    mov edx, [esi + SI_CPU_FREQ + 4]
    mov ecx, 1000000
    div ecx
    pop esi
    pop edx
    pop ecx
    ret

# parse_uint(ESI = string) -> EAX = first decimal number in it, or 0 if none.
parse_uint:
    push ebx
    push ecx
    xor eax, eax
parse_skip:
    movzx ebx, byte ptr [esi]
    test ebx, ebx
    jz parse_done
    sub ebx, 0x30
    cmp ebx, 9
    jbe parse_digits
    inc esi
    jmp parse_skip
parse_digits:
    movzx ebx, byte ptr [esi]
    sub ebx, 0x30
    cmp ebx, 9
    ja parse_done
    mov ecx, 10
    mul ecx
    add eax, ebx
    inc esi
    jmp parse_digits
parse_done:
    pop ecx
    pop ebx
    ret

# mmu_one(EAX = ptr, EDX = val) -> EAX: mmu_update with a single request.
mmu_one:
    push ebx
    push ecx
    push edx
    mov [mmu_one_req], eax
    mov [mmu_one_req + 4], edx
    mov eax, 1
    mov ebx, mmu_one_req
    mov ecx, 1
    xor edx, edx
    int 0x82
    pop edx
    pop ecx
    pop ebx
    ret

# mmu_ext(EAX = ptr, EDX = MMUEXT command | argument << 8) -> EAX: one extended command.
mmu_ext:
    or eax, 3
    jmp mmu_one

# uva(EAX = virtual address, EDX = new PTE, ECX = UVMF flags) -> EAX: update_va_mapping.
uva:
    push ebx
    push ecx
    push edx
    mov ebx, eax
    shr ebx, 12
    xchg ecx, edx
    mov eax, 14
    int 0x82
    pop edx
    pop ecx
    pop ebx
    ret

# pfn_to_mfn(EAX = pseudo-physical frame) -> EAX: from start_info's mfn_list.
pfn_to_mfn:
    push esi
    mov esi, [start_info_ptr]
    mov esi, [esi + 40]
    mov eax, [esi + eax * 4]
    pop esi
    ret

# pt_base_pfn -> EAX: the pseudo-physical frame of the bootstrap page directory
# (start_info.pt_base is its virtual address in the linear bootstrap region).
# Leaves ESI = start_info.
pt_base_pfn:
    mov esi, [start_info_ptr]
    mov eax, [esi + 24]
    sub eax, 0xC0000000
    shr eax, 12
    ret

# pt_base_mfn -> EAX: the machine frame of the bootstrap page directory. Leaves
# ESI = start_info.
pt_base_mfn:
    call pt_base_pfn
    jmp pfn_to_mfn

# first_free_pfn -> EAX: the first frame after the bootstrap region (page tables,
# start_info and stack follow the L2 at pt_base); nothing maps it at start of day.
first_free_pfn:
    push esi
    call pt_base_pfn
    add eax, [esi + 32]
    add eax, 2
    pop esi
    ret

# ---- the control interface (Xen 2.0 io/domain_controller.h), as XenLinux 2.0's ----
# ctrl_if.c drives it: control_if_t in shared_info, port start_info.domain_controller_evtchn.
# tx ring: our requests (console output), answered by the controller; rx ring: the
# controller's requests (console input, shutdown, memory target), answered by us.
# Ring work runs with upcalls masked (XenLinux's spin_lock_irqsave), because main
# code and an event handler may both use the rings.

# ctrl_if_init -> EAX = 0 when the control interface is ready, -1 when this domain
# has none (Domain-0, or a machine without a controller). Maps shared_info at
# ctrl_shinfo_page unless the guest mapped it already (shared_va), and syncs with the
# shared indices as ctrl_if_resume does. Idempotent.
ctrl_if_init:
    cmp dword ptr [ctrl_si], 0
    jne cii_ready
    push ebx
    push esi
    mov esi, [start_info_ptr]
    test dword ptr [esi + START_INFO_FLAGS], SIF_INITDOMAIN
    jnz cii_none
    movzx eax, word ptr [esi + START_INFO_CTRL_EVTCHN]
    test eax, eax
    jz cii_none
    mov [ctrl_port], eax
    mov eax, [shared_va]
    test eax, eax
    jnz cii_mapped
    mov ebx, ctrl_shinfo_page
    call map_shared_info
    test eax, eax
    jnz cii_none
    mov eax, ctrl_shinfo_page
cii_mapped:
    mov ebx, [eax + CI_TX_RESP_PROD]
    mov [ctrl_tx_resp_cons], ebx
    mov ebx, [eax + CI_RX_RESP_PROD]
    mov [ctrl_rx_req_cons], ebx
    mov [ctrl_si], eax
    pop esi
    pop ebx
cii_ready:
    xor eax, eax
    ret
cii_none:
    pop esi
    pop ebx
    mov eax, -1
    ret

# ctrl_lock -> EAX = the upcall mask it found, for ctrl_unlock.
ctrl_lock:
    push ebx
    mov ebx, [ctrl_si]
    movzx eax, byte ptr [ebx + SI_UPCALL_MASK]
    mov byte ptr [ebx + SI_UPCALL_MASK], 1
    pop ebx
    ret

# ctrl_unlock(EAX = what ctrl_lock returned): put the mask back; if that unmasks with
# an event pending, a hypercall has Xen deliver it (as evtchn_unmask_upcalls).
ctrl_unlock:
    push eax
    push ebx
    mov ebx, [ctrl_si]
    mov [ebx + SI_UPCALL_MASK], al
    test al, al
    jnz cul_done
    cmp byte ptr [ebx + SI_UPCALL_PENDING], 0
    je cul_done
    push ecx
    push edx
    push esi
    push edi
    mov eax, HYPERVISOR_xen_version
    xor ebx, ebx
    int 0x82
    pop edi
    pop esi
    pop edx
    pop ecx
cul_done:
    pop ebx
    pop eax
    ret

# ctrl_send(ESI = a 64-byte control_msg_t) -> EAX = 0, or -1 when the ring is full
# (ctrl_if_send_message_noblock: -EAGAIN). Responses to our requests are taken back
# first; the runtime asks for none by id (CONTROL_MSG_NO_ID), so they are dropped.
ctrl_send:
    push ebx
    push ecx
    push edx
    push esi
    push edi
    call ctrl_lock
    push eax
    mov ebx, [ctrl_si]
    mov eax, [ebx + CI_TX_RESP_PROD]
    mov [ctrl_tx_resp_cons], eax
    mov eax, [ebx + CI_TX_REQ_PROD]
    mov edx, eax
    sub edx, [ctrl_tx_resp_cons]
    cmp edx, CONTROL_RING_SIZE
    jae cs_full
    mov edi, eax
    and edi, 7
    shl edi, 6
    lea edi, [ebx + edi + CI_TX_RING]
    mov ecx, 16
    rep movsd dword ptr es:[edi], dword ptr [esi]
    inc eax
    mov [ebx + CI_TX_REQ_PROD], eax
    mov eax, [ctrl_port]
    call evtchn_send
    xor edx, edx
    jmp cs_out
cs_full:
    mov edx, -1
cs_out:
    pop eax
    call ctrl_unlock
    mov eax, edx
    pop edi
    pop esi
    pop edx
    pop ecx
    pop ebx
    ret

# ctrl_send_wait(ESI = message) -> EAX = 0, or -1 if the ring stayed full over
# CTRL_SEND_TRIES yields (the controller is not answering).
ctrl_send_wait:
    push ebx
    push ecx
    mov ecx, CTRL_SEND_TRIES
csw_try:
    call ctrl_send
    test eax, eax
    jz csw_done
    push ecx
    push edx
    push esi
    push edi
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    int 0x82
    pop edi
    pop esi
    pop edx
    pop ecx
    dec ecx
    jnz csw_try
    mov eax, -1
csw_done:
    pop ecx
    pop ebx
    ret

# ctrl_console_write(ECX = count, EDX = buffer) -> EAX = bytes sent, or -EPERM when
# there is no control interface: CMSG_CONSOLE_DATA messages of up to 60 bytes.
ctrl_console_write:
    call ctrl_if_init
    test eax, eax
    jns ccw_go
    mov eax, -1                   # -EPERM
    ret
ccw_go:
    push ebx
    push ecx
    push edx
    push esi
    push edi
    mov esi, edx
    mov ebx, ecx
ccw_chunk:
    test ebx, ebx
    jz ccw_done
    mov ecx, ebx
    cmp ecx, CONTROL_MSG_DATA
    jbe ccw_fits
    mov ecx, CONTROL_MSG_DATA
ccw_fits:
    mov byte ptr [ctrl_tx_msg], CMSG_CONSOLE
    mov byte ptr [ctrl_tx_msg + 1], CMSG_CONSOLE_DATA
    mov byte ptr [ctrl_tx_msg + 2], CONTROL_MSG_NO_ID
    mov [ctrl_tx_msg + 3], cl
    sub ebx, ecx
    mov edi, ctrl_tx_msg
    add edi, 4
    rep movsb
    push esi
    mov esi, ctrl_tx_msg
    call ctrl_send_wait
    pop esi
    test eax, eax
    jns ccw_chunk
    movzx eax, byte ptr [ctrl_tx_msg + 3]
    add ebx, eax
ccw_done:
    mov eax, [esp + 12]
    sub eax, ebx
    pop edi
    pop esi
    pop edx
    pop ecx
    pop ebx
    ret

# ctrl_respond: answer with ctrl_rx_msg in the rx ring and notify (ctrl_if_send_response).
# Call with the rings locked.
ctrl_respond:
    push eax
    push ebx
    push ecx
    push esi
    push edi
    mov ebx, [ctrl_si]
    mov eax, [ebx + CI_RX_RESP_PROD]
    mov edi, eax
    and edi, 7
    shl edi, 6
    lea edi, [ebx + edi + CI_RX_RING]
    mov esi, ctrl_rx_msg
    mov ecx, 16
    rep movsd dword ptr es:[edi], dword ptr [esi]
    inc eax
    mov [ebx + CI_RX_RESP_PROD], eax
    mov eax, [ctrl_port]
    call evtchn_send
    pop edi
    pop esi
    pop ecx
    pop ebx
    pop eax
    ret

# ctrl_if_rx -> EAX = requests handled: every request the controller put in the rx
# ring, each copied out, handled and answered in order (__ctrl_if_rx_tasklet):
#   CMSG_CONSOLE_DATA   bytes appended to ctrl_in_buf (CTRL_INPUT_SIZE); a message
#                       that does not fit is left in the ring (and what follows it):
#                       call again once the guest has emptied ctrl_in_buf
#   CMSG_SHUTDOWN       answered, then shutdown with the same reason; if the guest set
#                       ctrl_shutdown_deferred, only noted in ctrl_shutdown_req
#                       (reason + 1) for it to act on
#   CMSG_MEM_REQUEST    balloon_set_target; mem_request_t.status = its result
#   anything else       answered empty (XenLinux's default handler)
# A guest calls it from its event handler for ctrl_port, or from its main loop.
ctrl_if_rx:
    pushad
    xor ebp, ebp
    cmp dword ptr [ctrl_si], 0
    je crx_out
    call ctrl_lock
    push eax
crx_next:
    mov ebx, [ctrl_si]
    mov eax, [ebx + CI_TX_RESP_PROD]
    mov [ctrl_tx_resp_cons], eax
    mov eax, [ctrl_rx_req_cons]
    cmp eax, [ebx + CI_RX_REQ_PROD]
    je crx_unlock
    mov esi, eax
    and esi, 7
    shl esi, 6
    lea esi, [ebx + esi + CI_RX_RING]
    # console input that does not fit stays in the ring until the guest has taken
    # what ctrl_in_buf holds (the controller then waits, holding the rest)
    cmp word ptr [esi], CMSG_CONSOLE      # type and subtype: CMSG_CONSOLE_DATA
    jne crx_take
    movzx ecx, byte ptr [esi + 3]
    add ecx, [ctrl_in_len]
    cmp ecx, CTRL_INPUT_SIZE
    ja crx_unlock
crx_take:
    mov edi, ctrl_rx_msg
    mov ecx, 16
    rep movsd dword ptr es:[edi], dword ptr [esi]
    inc eax
    mov [ctrl_rx_req_cons], eax
    inc ebp
    movzx eax, byte ptr [ctrl_rx_msg]
    cmp eax, CMSG_CONSOLE
    je crx_console
    cmp eax, CMSG_SHUTDOWN
    je crx_shutdown
    cmp eax, CMSG_MEM_REQUEST
    je crx_mem
crx_empty:
    mov byte ptr [ctrl_rx_msg + 3], 0
crx_answer:
    call ctrl_respond
    jmp crx_next
crx_console:
    cmp byte ptr [ctrl_rx_msg + 1], CMSG_CONSOLE_DATA
    jne crx_empty
    movzx ecx, byte ptr [ctrl_rx_msg + 3]
    cmp ecx, CONTROL_MSG_DATA
    jbe crx_c_len
    mov ecx, CONTROL_MSG_DATA
crx_c_len:
    mov esi, ctrl_rx_msg
    add esi, 4
crx_c_byte:
    test ecx, ecx
    jz crx_empty
    mov edx, [ctrl_in_len]
    cmp edx, CTRL_INPUT_SIZE
    jae crx_c_drop
    mov al, [esi]
    mov [ctrl_in_buf + edx], al
    inc dword ptr [ctrl_in_len]
    jmp crx_c_next
crx_c_drop:
    inc dword ptr [ctrl_in_dropped]
crx_c_next:
    inc esi
    dec ecx
    jmp crx_c_byte
crx_shutdown:
    movzx eax, byte ptr [ctrl_rx_msg + 1]
    cmp eax, SHUTDOWN_suspend
    ja crx_empty
    mov byte ptr [ctrl_rx_msg + 3], 0
    call ctrl_respond
    cmp dword ptr [ctrl_shutdown_deferred], 0
    je crx_shut_now
    inc eax
    mov [ctrl_shutdown_req], eax
    jmp crx_next
crx_shut_now:
    call shutdown
crx_mem:
    cmp byte ptr [ctrl_rx_msg + 1], CMSG_MEM_REQUEST_SET
    jne crx_empty
    cmp byte ptr [ctrl_rx_msg + 3], 8
    jne crx_empty
    mov eax, [ctrl_rx_msg + 4]
    mov [ctrl_mem_target], eax
    call balloon_set_target
    mov [ctrl_rx_msg + 8], eax
    mov [ctrl_mem_status], eax
    inc dword ptr [ctrl_mem_requests]
    jmp crx_answer
crx_unlock:
    pop eax
    call ctrl_unlock
crx_out:
    mov [esp + 28], ebp
    popad
    ret

# ---- the balloon (XenLinux's balloon driver, serving CMSG_MEM_REQUEST_SET) ----------
# bal_memop(EBX = MEMOP_*, ECX = frames) -> EAX = dom_mem_op's result, on bal_list
# for this domain; keeps ECX and EDI.
bal_memop:
    push ecx
    push edi
    mov eax, HYPERVISOR_dom_mem_op
    mov edx, ecx
    mov ecx, bal_list
    xor esi, esi
    mov edi, DOMID_SELF
    int 0x82
    pop edi
    pop ecx
    ret

# balloon_set_target(EAX = pages wanted) -> EAX = 1 when the domain has that many
# pages, 0 when it stopped short. Its pages are pfns 0 .. bal_pages-1: it gives back
# the highest first (dom_mem_op decrease_reservation, BALLOON_BATCH frames a call; the
# pfn's mfn_list entry becomes INVALID_P2M_ENTRY), never one of its bootstrap region
# (below first_free_pfn, which it maps), and takes frames back (increase_reservation)
# into the pfns it gave up, recording each in mfn_list and the machine->phys table
# (MMU_MACHPHYS_UPDATE). So it never grows past its boot size, the length of its
# mfn_list; the hypervisor stops it at max_pages before that.
balloon_set_target:
    push ebx
    push ecx
    push edx
    push esi
    push edi
    mov [bal_want], eax
    cmp dword ptr [bal_max], 0
    jne bst_known
    mov esi, [start_info_ptr]
    mov ecx, [esi + START_INFO_NR_PAGES]
    mov [bal_pages], ecx
    mov [bal_max], ecx
bst_known:
    mov edi, eax
    cmp edi, [bal_pages]
    jb bst_shrink
    ja bst_grow
    jmp bst_check
bst_shrink:
    call first_free_pfn
    cmp edi, eax
    jae bst_s_batch
    mov edi, eax
bst_s_batch:
    mov ecx, [bal_pages]
    sub ecx, edi
    jbe bst_check
    cmp ecx, BALLOON_BATCH
    jbe bst_s_fill0
    mov ecx, BALLOON_BATCH
bst_s_fill0:
    mov esi, [start_info_ptr]
    mov esi, [esi + 40]
    mov edx, [bal_pages]
    xor ebx, ebx
bst_s_fill:
    dec edx
    mov eax, [esi + edx*4]
    mov [bal_list + ebx*4], eax
    inc ebx
    cmp ebx, ecx
    jb bst_s_fill
    mov ebx, MEMOP_decrease_reservation
    call bal_memop
    test eax, eax
    jle bst_check
    mov [bal_got], eax
    mov esi, [start_info_ptr]
    mov esi, [esi + 40]
    mov edx, [bal_pages]
    mov ebx, eax
bst_s_inval:
    dec edx
    mov dword ptr [esi + edx*4], INVALID_P2M_ENTRY
    dec ebx
    jnz bst_s_inval
    mov [bal_pages], edx
    cmp [bal_got], ecx
    je bst_s_batch
    jmp bst_check
bst_grow:
    cmp edi, [bal_max]
    jbe bst_g_batch
    mov edi, [bal_max]
bst_g_batch:
    mov ecx, edi
    sub ecx, [bal_pages]
    jbe bst_check
    cmp ecx, BALLOON_BATCH
    jbe bst_g_call
    mov ecx, BALLOON_BATCH
bst_g_call:
    mov ebx, MEMOP_increase_reservation
    call bal_memop
    test eax, eax
    jle bst_check
    mov [bal_got], eax
    xor ebx, ebx
bst_g_each:
    mov esi, [start_info_ptr]
    mov esi, [esi + 40]
    mov edx, [bal_pages]
    mov eax, [bal_list + ebx*4]
    mov [esi + edx*4], eax
    shl eax, 12
    or eax, MMU_MACHPHYS_UPDATE
    push edi
    call mmu_one
    pop edi
    inc dword ptr [bal_pages]
    inc ebx
    cmp ebx, [bal_got]
    jb bst_g_each
    cmp [bal_got], ecx
    je bst_g_batch
bst_check:
    xor eax, eax
    mov ecx, [bal_pages]
    cmp ecx, [bal_want]
    jne bst_out
    mov eax, 1
bst_out:
    pop edi
    pop esi
    pop edx
    pop ecx
    pop ebx
    ret

xt_stime_lo: .long 0
evtchn_port_handler: .long 0
evtchn_bind_retries: .long 0
buz_deadline: .long 0, 0
evtchn_op_buf: .space 32
t_failsafe_rt: .asciz "failsafe"
xt_stime_hi: .long 0
xt_freq: .long 0
xt_freq_hi: .long 0
shared_va: .long 0
minus_sign: .asciz "-"
equals_sign: .asciz "="
newline: .asciz "\n"
start_info_ptr: .long 0
line_len: .long 0
mmu_one_req: .long 0, 0
line_buf: .space 256
dec_buf: .space 12
dec_end: .space 4
ctrl_si: .long 0
ctrl_port: .long 0
ctrl_tx_resp_cons: .long 0
ctrl_rx_req_cons: .long 0
ctrl_in_len: .long 0
ctrl_in_dropped: .long 0
ctrl_shutdown_deferred: .long 0
ctrl_shutdown_req: .long 0
ctrl_mem_requests: .long 0
ctrl_mem_target: .long 0
ctrl_mem_status: .long 0
bal_pages: .long 0
bal_max: .long 0
bal_want: .long 0
bal_got: .long 0
ctrl_tx_msg: .space 64
ctrl_rx_msg: .space 64
ctrl_in_buf: .space 256
bal_list: .space 256
.align 4096
ctrl_shinfo_page: .space 4096
