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

# console_write(ECX = count, EDX = buffer) -> EAX
console_write:
    push ebx
    mov ebx, CONSOLEIO_write
    mov eax, HYPERVISOR_console_io
    int 0x82
    pop ebx
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
# CPU's rdtsc (negative deltas clamp to 0), using cpu_freq's quotient.
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
    cmp ebp, [esi + SI_TIME_VERSION1]
    jne xen_time_retry
    # quotient = (1000 << 32) / cpu_khz, cpu_khz = cpu_freq / 1000
    mov eax, [xt_freq]
    xor edx, edx
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

# first_free_pfn -> EAX: the first frame after the bootstrap region (page tables,
# start_info and stack follow the L2 at pt_base); nothing maps it at start of day.
first_free_pfn:
    push esi
    mov esi, [start_info_ptr]
    mov eax, [esi + 24]
    sub eax, 0xC0000000
    shr eax, 12
    add eax, [esi + 32]
    add eax, 2
    pop esi
    ret

xt_stime_lo: .long 0
xt_stime_hi: .long 0
xt_freq: .long 0
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
