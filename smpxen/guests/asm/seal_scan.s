# seal_scan: the hypervisor area seen from a guest. From ring 1, then from a ring-3
# program, it tries to read and then to write the first word of every page from
# 0xFC000000 to 0xFFFFFFFF (16384 pages); its #GP and #PF handlers count each fault
# and skip the access. A readable page gets its own value written back, so a
# write that succeeded would change nothing. Then it checks the M2P table for its
# own frames: for every pfn, M2P[mfn_list[pfn]] must be pfn. Xen 2.0 (segment
# limits) lets a guest see the read-only M2P table and nothing above 0xFC400000.
#
# With an odd number on the command line ("tables={index}" in a config) it first
# installs descriptor tables of its own, so that its PERDOMAIN area (0xFF400000) is
# mapped too: a GDT of one frame (set_gdt) and a one-page LDT (MMUEXT_SET_LDT),
# and loads ES from the LDT; the CPU then reads its descriptors there, in ring 1
# and in ring 3 (CS and SS of the ring-3 program come from its own GDT frame).
#
# Printed: pcpu, nr_pages, own_tables (0/1), ldt_load (1: the LDT segment loaded),
# then for each ring (prefix ring1_ / ring3_) one "name=value" line each:
#   readable_m2p   pages read below 0xFC400000 (the M2P table)
#   readable_hv    pages read at or above 0xFC400000
#   writable       pages written anywhere
#   read_gp, read_pf, write_gp, write_pf   faults by kind
#   gp_errcode_nonzero   #GP faults whose error code was not 0
#   cr2_wrong      #PF faults whose CR2 was not the address tried
#   cr2_ldt        #PF faults in the LDT shadow (0xFF410000), which the hypervisor
#                  reports at the guest's own LDT address, as Xen does
#   scanned        pages tried
#   m2p_checked, m2p_wrong   own frames checked in the M2P table, entries not right

.equ HYPERVISOR_set_trap_table, 0
.equ HYPERVISOR_set_gdt, 2
.equ HYPERVISOR_stack_switch, 3
.equ FLAT_RING1_DS, 0x0821
.equ FLAT_RING3_CS, 0x082b
.equ FLAT_RING3_DS, 0x0833
.equ SCAN_FIRST, 0xFC000000
.equ PAGE_OFFSET, 0xFC400000
.equ NR_COUNTERS, 13
.equ LDT_SHADOW, 0xFF410000
.equ SYS_DONE, 1
.equ LDTVA, 0xC0300000          # a free frame of ours, mapped here for SET_LDT
.equ SET_LDT_2, 0x209           # MMUEXT_SET_LDT, 2 entries
.equ SEL_LDT1, 0x0D             # LDT entry 1, RPL 1

guest_main:
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, trap_table
    int 0x82
    test eax, eax
    jnz setup_failed
    mov eax, HYPERVISOR_stack_switch
    mov ebx, FLAT_RING1_DS
    mov ecx, kstack_top
    int 0x82
    test eax, eax
    jnz setup_failed
    call pcpu_id
    mov esi, t_pcpu
    call report
    mov esi, [start_info_ptr]
    mov eax, [esi + START_INFO_NR_PAGES]
    mov esi, t_nr_pages
    call report
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    and eax, 1
    mov [own_tables], eax
    mov esi, t_own_tables
    call report
    cmp dword ptr [own_tables], 0
    je tables_done
    call install_tables
tables_done:

    # --- ring 1
    call scan
    call m2p_check
    mov esi, t_ring1
    call report_counters

    # --- ring 3: iret to the user program with user data segments
    mov ax, FLAT_RING3_DS
    mov ds, ax
    mov es, ax
    push FLAT_RING3_DS
    mov eax, ustack_top
    push eax
    push 0x202
    push FLAT_RING3_CS
    mov eax, user_main
    push eax
    iretd

# install_tables: a GDT frame of ours (zeroed; set_gdt copies Xen's entries into
# it) and an LDT whose entry 1 is a flat ring-1 data segment; then ES from the LDT.
install_tables:
    call first_free_pfn
    mov [free_pfn], eax
    call pfn_to_mfn
    mov [gdt_mfn], eax
    mov eax, HYPERVISOR_set_gdt
    mov ebx, gdt_mfn
    mov ecx, 512
    int 0x82
    test eax, eax
    jnz setup_failed
    mov eax, [free_pfn]
    inc eax
    call pfn_to_mfn
    mov [ldt_mfn], eax
    mov eax, LDTVA
    mov edx, [ldt_mfn]
    shl edx, 12
    or edx, 0x27
    mov ecx, UVMF_INVLPG
    call uva
    test eax, eax
    jnz setup_failed
    mov dword ptr [0xC0300008], 0x0000FFFF
    mov dword ptr [0xC030000C], 0x00CFB200
    mov eax, LDTVA
    mov edx, [ldt_mfn]
    shl edx, 12
    or edx, 0x25
    mov ecx, UVMF_INVLPG
    call uva
    test eax, eax
    jnz setup_failed
    mov eax, LDTVA
    mov edx, SET_LDT_2
    call mmu_ext
    test eax, eax
    jnz setup_failed
    mov ax, SEL_LDT1
    mov es, ax
    mov eax, es
    cmp eax, SEL_LDT1
    sete al
    movzx eax, al
    mov esi, t_ldt_load
    call report
    mov ax, FLAT_RING1_DS
    mov es, ax
    ret

setup_failed:
    mov esi, t_setup_failed
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown

# ------------------------------------------------------------------ ring 3
user_main:
    call scan
    call m2p_check
    mov eax, SYS_DONE
    int 0x80
user_spin:
    jmp user_spin

# ------------------------------------------------------------------ the scan
# scan: zero the counters, then for every page from SCAN_FIRST to the top of the
# address space try a read and a write of its first word. Runs in ring 1 or ring 3.
scan:
    push eax
    push ecx
    push edi
    mov edi, counters
    mov ecx, NR_COUNTERS
    xor eax, eax
    rep stosd
    mov edi, SCAN_FIRST
scan_loop:
    inc dword ptr [counters + 36]
    mov dword ptr [faulted], 0
    xor eax, eax
scan_read:
    mov eax, dword ptr [edi]
scan_read_done:
    cmp dword ptr [faulted], 0
    jne scan_write_try
    cmp edi, PAGE_OFFSET
    jae scan_read_hv
    inc dword ptr [counters + 0]
    jmp scan_write_try
scan_read_hv:
    inc dword ptr [counters + 4]
scan_write_try:
    mov dword ptr [faulted], 0
scan_write:
    mov dword ptr [edi], eax
scan_write_done:
    cmp dword ptr [faulted], 0
    jne scan_next
    inc dword ptr [counters + 8]
scan_next:
    add edi, 0x1000
    jnz scan_loop
    pop edi
    pop ecx
    pop eax
    ret

# m2p_check: for every pfn of this domain, M2P[mfn_list[pfn]] == pfn.
m2p_check:
    push eax
    push ebx
    push ecx
    push esi
    mov esi, [start_info_ptr]
    mov ecx, [esi + START_INFO_NR_PAGES]
    mov esi, [esi + 40]
    xor ebx, ebx
m2p_loop:
    cmp ebx, ecx
    jae m2p_done
    mov eax, [esi + ebx * 4]
    mov dword ptr [faulted], 0
m2p_read:
    mov eax, dword ptr [SCAN_FIRST + eax * 4]
m2p_read_done:
    inc dword ptr [counters + 40]
    cmp dword ptr [faulted], 0
    jne m2p_wrong
    cmp eax, ebx
    je m2p_next
m2p_wrong:
    inc dword ptr [counters + 44]
m2p_next:
    inc ebx
    jmp m2p_loop
m2p_done:
    pop esi
    pop ecx
    pop ebx
    pop eax
    ret

# report_counters(ESI = prefix): one line per counter.
report_counters:
    push eax
    push ecx
    push edx
    push esi
    mov edx, esi
    xor ecx, ecx
rc_loop:
    mov esi, edx
    call line_puts
    mov esi, [counter_labels + ecx * 4]
    mov eax, [counters + ecx * 4]
    call report
    inc ecx
    cmp ecx, NR_COUNTERS
    jb rc_loop
    pop esi
    pop edx
    pop ecx
    pop eax
    ret

# ------------------------------------------------------------------ handlers (ring 1)
# fixup(EAX = faulting EIP, EDX = counter offset for a read fault; a write fault
# counts at EDX + 8) -> EAX = where to resume, or 0 if the fault was not ours.
fixup:
    cmp eax, scan_read
    je fixup_read
    cmp eax, scan_write
    je fixup_write
    cmp eax, m2p_read
    je fixup_m2p
    xor eax, eax
    ret
fixup_read:
    inc dword ptr [counters + edx]
    mov eax, scan_read_done
    jmp fixup_done
fixup_write:
    inc dword ptr [counters + edx + 8]
    mov eax, scan_write_done
    jmp fixup_done
fixup_m2p:
    mov eax, m2p_read_done
fixup_done:
    mov dword ptr [faulted], 1
    ret

# #GP: [error code, EIP, CS, EFLAGS(, ESP, SS)]
gp_handler:
    push eax
    push edx
    cmp dword ptr [esp + 8], 0
    je gp_code_zero
    inc dword ptr [counters + 28]
gp_code_zero:
    mov eax, [esp + 12]
    mov edx, 12
    call fixup
    test eax, eax
    jz unexpected_fault
    mov [esp + 12], eax
    pop edx
    pop eax
    add esp, 4
    iretd

# #PF: [CR2, error code, EIP, CS, EFLAGS(, ESP, SS)]; the address tried is in EDI
# (or, for the M2P check, computed from EAX).
pf_handler:
    push eax
    push edx
    mov eax, [esp + 16]
    cmp eax, m2p_read
    je pf_cr2_done
    cmp [esp + 8], edi
    je pf_cr2_done
    mov eax, edi
    and eax, 0xFFFFF000
    cmp eax, LDT_SHADOW
    jne pf_cr2_wrong
    mov eax, edi
    sub eax, 0x3F110000             # LDT_SHADOW - LDTVA
    cmp [esp + 8], eax
    jne pf_cr2_wrong
    inc dword ptr [counters + 48]
    jmp pf_cr2_done
pf_cr2_wrong:
    inc dword ptr [counters + 32]
pf_cr2_done:
    mov eax, [esp + 16]
    mov edx, 16
    call fixup
    test eax, eax
    jz unexpected_fault
    mov [esp + 16], eax
    pop edx
    pop eax
    add esp, 8
    iretd

unexpected_fault:
    mov ax, FLAT_RING1_DS
    mov ds, ax
    mov es, ax
    mov esi, t_unexpected
    mov eax, 1
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown

# int 0x80 from the ring-3 program: report its counters and power off.
syscall_handler:
    mov ax, FLAT_RING1_DS
    mov ds, ax
    mov es, ax
    mov esi, t_ring3
    call report_counters
    mov esi, t_done
    mov eax, 1
    call report
    mov eax, SHUTDOWN_poweroff
    call shutdown

# trap_info_t entries: vector, flags (DPL | 4 for IF), cs (u16), address
.align 8
trap_table:
    .byte 13, 0, 0x19, 0x08
    .long gp_handler
    .byte 14, 0, 0x19, 0x08
    .long pf_handler
    .byte 0x80, 3, 0x19, 0x08
    .long syscall_handler
    .long 0, 0

counter_labels:
    .long l_readable_m2p, l_readable_hv, l_writable, l_read_gp, l_read_pf, l_write_gp
    .long l_write_pf, l_gp_errcode, l_cr2_wrong, l_scanned, l_m2p_checked, l_m2p_wrong
    .long l_cr2_ldt
l_readable_m2p: .asciz "readable_m2p"
l_readable_hv: .asciz "readable_hv"
l_writable: .asciz "writable"
l_read_gp: .asciz "read_gp"
l_read_pf: .asciz "read_pf"
l_write_gp: .asciz "write_gp"
l_write_pf: .asciz "write_pf"
l_gp_errcode: .asciz "gp_errcode_nonzero"
l_cr2_wrong: .asciz "cr2_wrong"
l_scanned: .asciz "scanned"
l_m2p_checked: .asciz "m2p_checked"
l_m2p_wrong: .asciz "m2p_wrong"
l_cr2_ldt: .asciz "cr2_ldt"
t_ring1: .asciz "ring1_"
t_ring3: .asciz "ring3_"
t_pcpu: .asciz "pcpu"
t_nr_pages: .asciz "nr_pages"
t_done: .asciz "done"
t_own_tables: .asciz "own_tables"
t_ldt_load: .asciz "ldt_load"
t_setup_failed: .asciz "setup_failed"
t_unexpected: .asciz "unexpected_fault"
.align 4
own_tables: .long 0
free_pfn: .long 0
gdt_mfn: .long 0
ldt_mfn: .long 0
faulted: .long 0
counters: .space 52
.align 16
.space 2048
ustack_top:
.space 2048
kstack_top:
.space 4096
boot_stack_top:
