# mm_ldt: a local descriptor table, the Xen 2.0 way. The guest builds an LDT in
# one of its own frames while it is mapped writable, makes that mapping read-only
# (a frame in use as an LDT may have no writable mapping), installs it with
# MMUEXT_SET_LDT and loads a ring-1 data segment from it (selector 0x0D: entry 1,
# TI=1, RPL 1) whose base is 8, so a read through it lands 8 bytes further on. The
# LDT spans two pages: the hypervisor maps page 0 right after SET_LDT, page 1 when
# the first load from it (selector 0x1005, entry 512) faults.
# Then: mapping the LDT frame writable (at its own address or another one) and a
# raw mmu_update write into it are refused; update_descriptor refuses a DPL-0
# descriptor and takes a good one, visible at once through the live LDT; an LDT
# page holding a DPL-0 descriptor is accepted by SET_LDT (pages are checked when
# they are mapped) but loading from it faults, and the guest's #PF handler sees
# the fault at its own LDT address; a loop reloads selectors from the LDT and,
# every 64 rounds, switches the LDT off and on again, checking that LDTR holds the
# selector of the PCPU it runs on (the first number on the command line is the
# loop count, default 2000); finally the LDT is switched off
# (ents 0), after which an LDT selector is a #GP and the frame may be mapped
# writable again. One "name=value" line per check.

.equ HYPERVISOR_set_trap_table, 0
.equ HYPERVISOR_stack_switch, 3
.equ HYPERVISOR_update_descriptor, 10
.equ FLAT_RING3_CS, 0x082B
.equ FLAT_RING3_DS, 0x0833
.equ LDTVA, 0xC0300000          # the LDT: two free frames of ours
.equ BADVA, 0xC0302000          # another LDT page, holding a DPL-0 descriptor
.equ ALIASVA, 0xC0303000
.equ SHVA, 0xC0304000           # shared_info (SI_TIME_VERSION2 at +276)
.equ PTE_RW, 0x27
.equ PTE_RO, 0x25
.equ SET_LDT, 9                 # MMUEXT_SET_LDT | ents << 8
.equ SET_LDT_520, 0x20809       # 520 entries: two pages
.equ SET_LDT_2, 0x209
.equ SEL_LDT1, 0x0D             # LDT entry 1, RPL 1
.equ SEL_LDT2, 0x15             # LDT entry 2, RPL 1
.equ SEL_LDT512, 0x1005         # LDT entry 512 (page 1), RPL 1
.equ SEL_LDT513, 0x100F         # LDT entry 513 (page 1), RPL 3
.equ FLAT_DS, 0x0821

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz have_loops
    mov eax, 2000
have_loops:
    mov [loops], eax
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, trap_table
    int 0x82
    mov esi, t_trap_table
    call report
    call first_free_pfn
    mov [free_pfn], eax
    call pfn_to_mfn
    mov [ldt_mfn], eax
    mov eax, [free_pfn]
    inc eax
    call pfn_to_mfn
    mov [ldt_mfn1], eax
    mov eax, [free_pfn]
    add eax, 2
    call pfn_to_mfn
    mov [bad_mfn], eax

    # Build the LDT while the page is writable: entry 1 = data, DPL 1, base 8, 4 GiB.
    mov eax, LDTVA
    mov edx, [ldt_mfn]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov dword ptr [0xC0300008], 0x0008FFFF
    mov dword ptr [0xC030000C], 0x00CFB200
    mov eax, LDTVA                   # as a guest must: read-only before it is an LDT
    mov edx, [ldt_mfn]
    shl edx, 12
    or edx, PTE_RO
    mov ecx, 2
    call uva
    mov [result], eax
    # Page 1, entry 512: data, DPL 1, base 12.
    mov eax, 0xC0301000
    mov edx, [ldt_mfn1]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov dword ptr [0xC0301000], 0x000CFFFF
    mov dword ptr [0xC0301004], 0x00CFB200
    mov dword ptr [0xC0301008], 0x0000FFFF     # entry 513: data, DPL 3, base 0
    mov dword ptr [0xC030100C], 0x00CFF200
    mov eax, 0xC0301000
    mov edx, [ldt_mfn1]
    shl edx, 12
    or edx, PTE_RO
    mov ecx, 2
    call uva
    or eax, [result]
    mov esi, t_ldt_ro
    call report
    mov eax, LDTVA
    mov edx, SET_LDT_520
    call mmu_ext
    mov esi, t_set_ldt
    call report
    # Validation preset the accessed bit (the shadow is read-only to the CPU too).
    mov eax, [0xC030000C]
    shr eax, 8
    and eax, 1
    mov esi, t_accessed
    call report

    # Load the LDT data segment and read through it: the base applies.
    mov dword ptr [fault_resume], after_load1
    mov ax, SEL_LDT1
    mov es, ax
after_load1:
    mov eax, dword ptr es:[ldt_probe]
    cmp eax, 0x600DF00D
    sete al
    movzx eax, al
    mov esi, t_base_applies
    call report
    mov eax, dword ptr ds:[ldt_probe]
    cmp eax, 0x0BADBAD0
    sete al
    movzx eax, al
    mov esi, t_flat_differs
    call report
    mov dword ptr [fault_resume], after_load512
    mov ax, SEL_LDT512               # page 1 is mapped when this load faults
    mov es, ax
    mov eax, dword ptr es:[ldt_probe]
    cmp eax, 0x5EC0DE00
    sete al
    movzx eax, al
    mov [result], eax
after_load512:
    mov eax, [result]
    mov esi, t_page1_lazy
    call report
    mov eax, [0xC0301004]
    shr eax, 8
    and eax, 1
    mov esi, t_accessed1
    call report
    mov ax, SEL_LDT1
    mov es, ax
    mov ax, es
    movzx eax, ax
    mov esi, t_es
    call report

    # In use as an LDT: no writable mapping, no raw write.
    mov eax, LDTVA
    mov edx, [ldt_mfn]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov esi, t_map_rw
    call report
    mov eax, ALIASVA
    mov edx, [ldt_mfn1]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov esi, t_map_rw_alias
    call report
    mov eax, [ldt_mfn]
    shl eax, 12
    add eax, 16
    mov edx, 0x12345678
    call mmu_one
    mov esi, t_raw_write
    call report

    # update_descriptor on the live LDT: DPL 0 refused, a good one (base 4) taken.
    mov ebx, [ldt_mfn]
    shl ebx, 12
    add ebx, 16
    mov ecx, 0x0004FFFF
    mov edx, 0x00CF9200
    mov eax, HYPERVISOR_update_descriptor
    int 0x82
    mov esi, t_ud_ring0
    call report
    mov ebx, [ldt_mfn]
    shl ebx, 12
    add ebx, 16
    mov ecx, 0x0004FFFF
    mov edx, 0x00CFB200
    mov eax, HYPERVISOR_update_descriptor
    int 0x82
    mov esi, t_ud_good
    call report
    mov dword ptr [fault_resume], after_load2
    mov ax, SEL_LDT2
    mov es, ax
after_load2:
    mov eax, dword ptr es:[ldt_probe]
    cmp eax, 0x0BADBAD1
    sete al
    movzx eax, al
    mov esi, t_ud_seen
    call report

    # An LDT page with a DPL-0 descriptor: SET_LDT takes it, the load faults.
    mov ax, FLAT_DS
    mov es, ax
    mov eax, BADVA
    mov edx, [bad_mfn]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov dword ptr [0xC0302008], 0x0008FFFF
    mov dword ptr [0xC030200C], 0x00CF9200
    mov eax, BADVA
    mov edx, [bad_mfn]
    shl edx, 12
    or edx, PTE_RO
    mov ecx, 2
    call uva
    mov eax, BADVA
    mov edx, SET_LDT_2
    call mmu_ext
    mov esi, t_set_bad
    call report
    mov dword ptr [pf_count], 0
    mov dword ptr [fault_resume], after_bad
    mov ax, SEL_LDT1
    mov es, ax
after_bad:
    mov eax, [pf_count]
    mov esi, t_bad_pf
    call report
    mov eax, [pf_cr2]
    cmp eax, 0xC0302008
    sete al
    movzx eax, al
    mov esi, t_bad_cr2
    call report
    mov ax, es
    movzx eax, ax
    mov esi, t_bad_es
    call report
    mov eax, BADVA                   # it never became an LDT page
    mov edx, [bad_mfn]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov esi, t_bad_rw
    call report

    # Back to the good LDT; reload selectors from it in a loop (on whichever PCPU
    # runs us), switching the LDT off and on every 64 rounds.
    mov eax, LDTVA
    mov edx, SET_LDT_520
    call mmu_ext
    mov esi, t_set_again
    call report
    xor edi, edi
    mov dword ptr [errors], 0
    mov dword ptr [ldtr_errors], 0
    mov dword ptr [ldtr_checks], 0
    mov ebx, SHVA
    call map_shared_info
    mov esi, t_map_shared
    call report
    mov dword ptr [cpu_mask], 0
ldt_loop:
    mov ax, SEL_LDT1
    mov es, ax
    mov eax, dword ptr es:[ldt_probe]
    cmp eax, 0x600DF00D
    je ldt_loop_ok1
    inc dword ptr [errors]
ldt_loop_ok1:
    mov ax, SEL_LDT2
    mov es, ax
    mov eax, dword ptr es:[ldt_probe]
    cmp eax, 0x0BADBAD1
    je ldt_loop_ok2
    inc dword ptr [errors]
ldt_loop_ok2:
    mov ax, SEL_LDT512
    mov es, ax
    mov eax, dword ptr es:[ldt_probe]
    cmp eax, 0x5EC0DE00
    je ldt_loop_ok3
    inc dword ptr [errors]
ldt_loop_ok3:
    # LDTR holds the selector of the PCPU running us (Xen's __LDT(cpu)), whichever
    # that is now; only windows without a switch-in count.
    call sample_ldtr
    test eax, eax
    jnz ldt_loop_cpu
    inc dword ptr [ldtr_checks]
    movzx edx, dx
    lea ecx, [ebx * 2 + 265]
    shl ecx, 3
    cmp edx, ecx
    je ldt_loop_cpu
    inc dword ptr [ldtr_errors]
ldt_loop_cpu:
    mov ecx, ebx
    mov eax, 1
    shl eax, cl
    or [cpu_mask], eax
    test edi, 63
    jnz ldt_loop_next
    mov ax, FLAT_DS                  # no LDT selector may stay loaded across the switch-off
    mov es, ax
    xor eax, eax
    mov edx, SET_LDT
    call mmu_ext
    or [errors], eax
    mov eax, LDTVA
    mov edx, SET_LDT_520
    call mmu_ext
    or [errors], eax
ldt_loop_next:
    inc edi
    cmp edi, [loops]
    jb ldt_loop
    mov eax, [errors]
    mov esi, t_loop_errors
    call report
    mov eax, [ldtr_errors]
    mov esi, t_ldtr_errors
    call report
    mov eax, [ldtr_checks]
    mov esi, t_ldtr_checks
    call report
    mov eax, edi
    mov esi, t_loops
    call report
    mov eax, [cpu_mask]
    mov esi, t_cpu_mask
    call report
    # LDTR and the PCPU running us, from one window without a switch-in: reported
    # apart, a move in between (the report is a hypercall) would pair one PCPU's
    # selector with another's id.
ldtr_sample:
    call sample_ldtr
    test eax, eax
    jnz ldtr_sample
    mov [sample_pcpu], ebx
    movzx eax, dx
    mov esi, t_ldtr
    call report
    mov eax, [sample_pcpu]
    mov esi, t_pcpu
    call report

    # Ring 3 with DS = an LDT selector whose page is not in the shadow (the LDT was
    # switched off and on; only page 0 is mapped again): the trap back to ring 1
    # goes through the hypervisor's entry trampoline, whose ring-0 `pop ds` faults
    # on the shadow; the hypervisor maps the page there and the bounce completes.
    mov eax, HYPERVISOR_stack_switch
    mov ebx, FLAT_DS
    mov ecx, kstack_top
    int 0x82
    mov esi, t_stack_switch
    call report
    mov ax, SEL_LDT513
    mov ds, ax
    xor eax, eax
    mov edx, SET_LDT
    call mmu_ext
    mov [result], eax
    mov eax, LDTVA
    mov edx, SET_LDT_520
    call mmu_ext
    or [result], eax
    mov [saved_esp], esp
    mov eax, FLAT_RING3_DS
    push eax
    mov eax, ustack_top
    push eax
    pushfd
    mov eax, FLAT_RING3_CS
    push eax
    mov eax, user_code
    push eax
    iretd
user_code:
    int 0x81
user_spin:
    jmp user_spin
user_trap:                          # ring 1, DS as ring 3 had it
    mov esp, [saved_esp]
    mov ax, ds
    movzx eax, ax
    mov [user_trap_ds], eax
    mov ax, FLAT_DS
    mov ds, ax
    mov es, ax
    mov eax, [result]
    mov esi, t_user_reload
    call report
    mov eax, [user_trap_ds]
    mov esi, t_user_ds
    call report

    # Switch the LDT off: an LDT selector is a #GP now, and the frame is plain again.
    mov ax, FLAT_DS
    mov es, ax
    xor eax, eax
    mov edx, SET_LDT
    call mmu_ext
    mov esi, t_ldt_off
    call report
    mov dword ptr [gp_count], 0
    mov dword ptr [fault_resume], after_off
    mov ax, SEL_LDT1
    mov es, ax
after_off:
    mov eax, [gp_count]
    mov esi, t_off_gp
    call report
    mov eax, [gp_code]
    mov esi, t_off_gp_code
    call report
    sldt ax
    movzx eax, ax
    mov esi, t_off_ldtr
    call report
    mov eax, LDTVA
    mov edx, [ldt_mfn]
    shl edx, 12
    or edx, PTE_RW
    mov ecx, 2
    call uva
    mov esi, t_off_rw
    call report
    ret

# sample_ldtr -> EBX = the PCPU running us, DX = LDTR, EAX = 0 if both were read
# in one window in which we were not switched in again (the time version in
# shared_info moves at every schedule-in; a move away and back between the two
# pcpu_id reads would go unseen), nonzero otherwise. Clobbers ECX, EBP.
sample_ldtr:
    mov ebp, [0xC0304114]            # SHVA + SI_TIME_VERSION2
    call pcpu_id
    mov ebx, eax
    sldt dx
    call pcpu_id
    xor eax, ebx
    mov ecx, [0xC0304114]
    xor ecx, ebp
    or eax, ecx
    ret

# Faults the checks provoke: record them and resume at [fault_resume].
pf_handler:                         # [cr2] [error code] eip cs eflags
    push eax
    mov eax, [esp + 4]
    mov [pf_cr2], eax
    inc dword ptr [pf_count]
    mov eax, [fault_resume]
    mov [esp + 12], eax
    pop eax
    add esp, 8
    iretd
gp_handler:                         # [error code] eip cs eflags
    push eax
    mov eax, [esp + 4]
    mov [gp_code], eax
    inc dword ptr [gp_count]
    mov eax, [fault_resume]
    mov [esp + 8], eax
    pop eax
    add esp, 4
    iretd

t_trap_table: .asciz "set_trap_table"
t_ldt_ro: .asciz "ldt_page_ro"
t_set_ldt: .asciz "set_ldt"
t_accessed: .asciz "ldt_accessed_preset"
t_accessed1: .asciz "ldt_page1_accessed_preset"
t_page1_lazy: .asciz "ldt_page1_lazy"
t_base_applies: .asciz "ldt_base_applies"
t_flat_differs: .asciz "flat_read_differs"
t_es: .asciz "es_selector"
t_ldtr: .asciz "ldtr_selector"
t_pcpu: .asciz "pcpu"
t_map_rw: .asciz "ldt_map_rw"
t_map_rw_alias: .asciz "ldt_map_rw_alias"
t_raw_write: .asciz "ldt_raw_write"
t_ud_ring0: .asciz "ldt_update_ring0"
t_ud_good: .asciz "ldt_update_good"
t_ud_seen: .asciz "ldt_update_seen"
t_set_bad: .asciz "set_ldt_ring0_page"
t_bad_pf: .asciz "ring0_desc_page_faults"
t_bad_cr2: .asciz "ring0_desc_fault_at_ldt"
t_bad_es: .asciz "ring0_desc_es_unchanged"
t_bad_rw: .asciz "ring0_desc_page_rw"
t_set_again: .asciz "set_ldt_again"
t_loop_errors: .asciz "ldt_loop_errors"
t_loops: .asciz "ldt_loops"
t_ldtr_errors: .asciz "ldtr_errors"
t_ldtr_checks: .asciz "ldtr_checks"
t_map_shared: .asciz "map_shared_info"
t_cpu_mask: .asciz "pcpu_mask"
t_ldt_off: .asciz "set_ldt_off"
t_stack_switch: .asciz "stack_switch"
t_user_reload: .asciz "ldt_reset_for_ring3"
t_user_ds: .asciz "ring3_trap_ds"
t_off_gp: .asciz "ldt_off_gp"
t_off_gp_code: .asciz "ldt_off_gp_code"
t_off_ldtr: .asciz "ldt_off_ldtr"
t_off_rw: .asciz "ldt_off_page_rw"
.align 4
trap_table:
    .byte 13, 0, 0x19, 0x08
    .long gp_handler
    .byte 14, 0, 0x19, 0x08
    .long pf_handler
    .byte 0x81, 3, 0x19, 0x08
    .long user_trap
    .long 0, 0
ldt_probe: .long 0x0BADBAD0, 0x0BADBAD1, 0x600DF00D, 0x5EC0DE00
result: .long 0
ldt_mfn1: .long 0
loops: .long 0
free_pfn: .long 0
ldt_mfn: .long 0
bad_mfn: .long 0
fault_resume: .long 0
pf_count: .long 0
pf_cr2: .long 0
gp_count: .long 0
gp_code: .long 0
errors: .long 0
ldtr_errors: .long 0
ldtr_checks: .long 0
sample_pcpu: .long 0
cpu_mask: .long 0
saved_esp: .long 0
user_trap_ds: .long 0
.align 16
.space 1024
kstack_top:
.space 256
ustack_top:
.space 4096
boot_stack_top:
