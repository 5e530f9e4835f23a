# selftest_traps: virtual CPU state, trap bouncing and a ring-3 user program.
# The kernel (ring 1) checks the errors of set_trap_table, stack_switch,
# set_callbacks, set_fast_trap, set_debugreg and get_debugreg, then takes
# exceptions from its own privileged instructions (HLT, CR3 write, CLI), `int n` gates, #NM after
# fpu_taskswitch and #DE, and finally drops to a ring-3 program that makes system
# calls through the fast trap (int 0x80) and an ordinary trap (int 0x81), takes a
# page fault its kernel resolves, tries hypercalls and privileged instructions
# (#GP to the kernel) and exits through a system call. One "name=value" line per
# check; the test asserts on them.

.equ HYPERVISOR_set_trap_table, 0
.equ HYPERVISOR_stack_switch, 3
.equ HYPERVISOR_set_callbacks, 4
.equ HYPERVISOR_fpu_taskswitch, 5
.equ HYPERVISOR_set_debugreg, 8
.equ HYPERVISOR_get_debugreg, 9
.equ HYPERVISOR_set_fast_trap, 11
.equ HYPERVISOR_update_va_mapping, 14
.equ FLAT_RING1_CS, 0x0819
.equ FLAT_RING1_DS, 0x0821
.equ FLAT_RING3_CS, 0x082b
.equ FLAT_RING3_DS, 0x0833
.equ SYS_REPORT, 1
.equ SYS_EXIT, 2
.equ UNMAPPED_VA, 0xC0380000

guest_main:
    # --- set_trap_table: a Xen selector is refused, the good table installs
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, bad_trap_table
    int 0x82
    mov esi, t_stt_badcs
    call report
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, trap_table
    int 0x82
    mov esi, t_stt
    call report
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, 0x00001000
    int 0x82
    mov esi, t_stt_fault
    call report

    # --- stack_switch: ring-0 SS refused
    mov eax, HYPERVISOR_stack_switch
    mov ebx, 0x0810
    mov ecx, kstack_top
    int 0x82
    mov esi, t_ss_ring0
    call report
    mov eax, HYPERVISOR_stack_switch
    mov ebx, FLAT_RING1_DS
    mov ecx, kstack_top
    int 0x82
    mov esi, t_ss
    call report

    # --- set_callbacks: Xen's ring-0 CS refused, RPL 0 refused
    mov eax, HYPERVISOR_set_callbacks
    mov ebx, 0x0808
    mov ecx, event_cb
    mov edx, FLAT_RING1_CS
    mov esi, failsafe_cb
    int 0x82
    mov esi, t_cb_xencs
    call report
    mov eax, HYPERVISOR_set_callbacks
    mov ebx, FLAT_RING1_CS
    mov ecx, event_cb
    mov edx, 0x0818
    mov esi, failsafe_cb
    int 0x82
    mov esi, t_cb_rpl0
    call report
    mov eax, HYPERVISOR_set_callbacks
    mov ebx, FLAT_RING1_CS
    mov ecx, event_cb
    mov edx, FLAT_RING1_CS
    mov esi, failsafe_cb
    int 0x82
    mov esi, t_cb
    call report

    # --- set_fast_trap: bad vector, IF-flagged entry, then 0x80
    mov eax, HYPERVISOR_set_fast_trap
    mov ebx, 0x30
    int 0x82
    mov esi, t_ft_badvec
    call report
    mov eax, HYPERVISOR_set_fast_trap
    mov ebx, 0x21
    int 0x82
    mov esi, t_ft_ifflag
    call report
    mov eax, HYPERVISOR_set_fast_trap
    mov ebx, 0x80
    int 0x82
    mov esi, t_ft
    call report

    # --- set_debugreg / get_debugreg with Xen's validation
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 0
    mov ecx, 0xFC400000
    int 0x82
    mov esi, t_dr0_hv
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 0
    mov ecx, 0x1000
    int 0x82
    mov esi, t_dr0
    call report
    mov eax, HYPERVISOR_get_debugreg
    mov ebx, 0
    int 0x82
    mov esi, t_get_dr0
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 7
    mov ecx, 0x2000
    int 0x82
    mov esi, t_dr7_gd
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 7
    mov ecx, 0x20000
    int 0x82
    mov esi, t_dr7_io
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 7
    mov ecx, 0x1
    int 0x82
    mov esi, t_dr7
    call report
    mov eax, HYPERVISOR_get_debugreg
    mov ebx, 7
    int 0x82
    mov esi, t_get_dr7
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 6
    xor ecx, ecx
    int 0x82
    mov eax, HYPERVISOR_get_debugreg
    mov ebx, 6
    int 0x82
    mov esi, t_get_dr6
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 4
    xor ecx, ecx
    int 0x82
    mov esi, t_dr4
    call report
    mov eax, HYPERVISOR_get_debugreg
    mov ebx, 8
    int 0x82
    mov esi, t_get_dr8
    call report
    mov eax, HYPERVISOR_set_debugreg
    mov ebx, 7
    xor ecx, ecx
    int 0x82

    # --- privileged instructions in ring 1 fault to our #GP handler
    mov dword ptr [gp_skip], 1
    hlt
    mov eax, [gp_code]
    mov esi, t_gp_hlt
    call report
    mov dword ptr [gp_skip], 3
    mov eax, 0
    mov cr3, eax
    mov eax, [gp_code]
    mov esi, t_gp_cr3
    call report
    # (IN/OUT are not here: this Unicorn build allows all port I/O, see README)
    mov dword ptr [gp_skip], 1
    cli
    mov eax, [gp_count]
    mov esi, t_gp_count
    call report

    # --- int n from ring 1: a DPL-0 entry is a #GP(n*8+2); DPL-1 entry runs
    mov dword ptr [gp_skip], 2
    int 0x40
    mov eax, [gp_code]
    mov esi, t_int40_gp
    call report
    int 0x41
    mov eax, [int41_count]
    mov esi, t_int41
    call report
    int3
    mov eax, [bp_count]
    mov esi, t_int3
    call report

    # --- #NM after fpu_taskswitch, then the FPU works again
    mov eax, HYPERVISOR_fpu_taskswitch
    int 0x82
    fld1
    fld1
    faddp
    fistp dword ptr [fpu_result]
    mov eax, [nm_count]
    mov esi, t_nm
    call report
    mov eax, [fpu_result]
    mov esi, t_fpu_after_nm
    call report

    # --- #DE: divide by zero, handler skips the 2-byte div
    xor ecx, ecx
    mov eax, 7
    xor edx, edx
    div ecx
    mov eax, [de_count]
    mov esi, t_de
    call report

    # --- ring 3: iret to the user program with user data segments
    mov dword ptr [gp_count], 0
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

# ------------------------------------------------------------------ ring 3
user_main:
    mov eax, cs
    and eax, 3
    mov ebx, eax
    mov esi, t_user_ring
    mov eax, SYS_REPORT
    int 0x80
    # a fast-trap system call: the kernel doubles EBX and returns it in EAX
    mov eax, 3
    mov ebx, 21
    int 0x80
    mov ebx, eax
    mov esi, t_sys_fast
    mov eax, SYS_REPORT
    int 0x80
    # the same through an ordinary (bounced) trap
    mov eax, 3
    mov ebx, 50
    int 0x81
    mov ebx, eax
    mov esi, t_sys_trap
    mov eax, SYS_REPORT
    int 0x81
    # a page fault the kernel resolves; the load is retried and succeeds
    mov esi, UNMAPPED_VA
    mov eax, [esi]
    mov ebx, eax
    mov esi, t_user_pf_value
    mov eax, SYS_REPORT
    int 0x80
    mov eax, cs
    and eax, 3
    mov ebx, eax
    mov esi, t_user_ring_after_pf
    mov eax, SYS_REPORT
    int 0x80
    # hypercalls and privileged instructions from ring 3: #GP to the kernel
    mov dword ptr [gp_skip], 2
    mov eax, 17
    int 0x82
    mov dword ptr [gp_skip], 2
    int 0x40
    mov dword ptr [gp_skip], 1
    hlt
    mov ebx, [gp_count]
    mov esi, t_user_gp_count
    mov eax, SYS_REPORT
    int 0x80
    mov ebx, [user_gp_int82]
    mov esi, t_user_int82
    mov eax, SYS_REPORT
    int 0x80
    mov eax, SYS_EXIT
    int 0x81
user_spin:
    jmp user_spin

# ------------------------------------------------------------------ handlers (ring 1)
# syscall: EAX = number; 1 report(ESI label, EBX value); 2 exit; 3 double(EBX) -> EAX
syscall_handler:
    cmp eax, SYS_REPORT
    je sys_report
    cmp eax, SYS_EXIT
    je sys_exit
    cmp eax, 3
    je sys_double
    mov eax, -38
    iretd
sys_report:
    push eax
    mov eax, ebx
    call report
    pop eax
    iretd
sys_double:
    mov eax, ebx
    add eax, ebx
    iretd
sys_exit:
    mov ax, FLAT_RING1_DS
    mov ds, ax
    mov es, ax
    mov eax, [fast_count_probe]
    mov esi, t_pf_count
    mov eax, [pf_count]
    call report
    mov eax, [pf_code]
    mov esi, t_pf_code
    call report
    mov eax, [pf_cr2]
    mov esi, t_pf_cr2
    call report
    mov eax, [pf_from_cs]
    mov esi, t_pf_from_cs
    call report
    xor eax, eax
    call shutdown

# #GP: [error code, EIP, CS, EFLAGS(, ESP, SS)]
gp_handler:
    push eax
    mov eax, [esp + 4]
    mov [gp_code], eax
    cmp eax, 0x412
    jne gp_not82
    inc dword ptr [user_gp_int82]
gp_not82:
    inc dword ptr [gp_count]
    mov eax, [gp_skip]
    add [esp + 8], eax
    pop eax
    add esp, 4
    iretd

# #PF: [CR2, error code, EIP, CS, EFLAGS(, ESP, SS)]. Resolved like an exception
# fixup: the faulting load used ESI, point it at a readable word and retry.
pf_handler:
    push eax
    mov eax, [esp + 4]
    mov [pf_cr2], eax
    mov eax, [esp + 8]
    mov [pf_code], eax
    mov eax, [esp + 16]
    mov [pf_from_cs], eax
    inc dword ptr [pf_count]
    mov esi, pf_fixup_word
    pop eax
    add esp, 8
    iretd

int41_handler:
    inc dword ptr [int41_count]
    iretd
bp_handler:
    inc dword ptr [bp_count]
    iretd
nm_handler:
    inc dword ptr [nm_count]
    iretd
de_handler:
    inc dword ptr [de_count]
    add dword ptr [esp], 2
    iretd
event_cb:
    iretd
failsafe_cb:
    add esp, 16
    iretd

# trap_info_t entries: vector, flags (DPL | 4 for IF), cs (u16), address
.align 8
trap_table:
    .byte 0, 0, 0x19, 0x08
    .long de_handler
    .byte 3, 3, 0x19, 0x08
    .long bp_handler
    .byte 7, 0, 0x19, 0x08
    .long nm_handler
    .byte 13, 0, 0x19, 0x08
    .long gp_handler
    .byte 14, 0, 0x19, 0x08
    .long pf_handler
    .byte 0x21, 7, 0x19, 0x08
    .long int41_handler
    .byte 0x40, 0, 0x19, 0x08
    .long int41_handler
    .byte 0x41, 1, 0x19, 0x08
    .long int41_handler
    .byte 0x80, 3, 0x19, 0x08
    .long syscall_handler
    .byte 0x81, 3, 0x19, 0x08
    .long syscall_handler
    .long 0, 0
bad_trap_table:
    .byte 0x50, 0, 0x08, 0x08
    .long int41_handler
    .long 0, 0

t_stt_badcs: .asciz "set_trap_table_xencs"
t_stt: .asciz "set_trap_table"
t_stt_fault: .asciz "set_trap_table_unmapped"
t_ss_ring0: .asciz "stack_switch_ring0"
t_ss: .asciz "stack_switch"
t_cb_xencs: .asciz "set_callbacks_xencs"
t_cb_rpl0: .asciz "set_callbacks_rpl0"
t_cb: .asciz "set_callbacks"
t_ft_badvec: .asciz "set_fast_trap_0x30"
t_ft_ifflag: .asciz "set_fast_trap_ifflag"
t_ft: .asciz "set_fast_trap_0x80"
t_dr0_hv: .asciz "set_debugreg_dr0_hv"
t_dr0: .asciz "set_debugreg_dr0"
t_get_dr0: .asciz "get_debugreg_dr0"
t_dr7_gd: .asciz "set_debugreg_dr7_gd"
t_dr7_io: .asciz "set_debugreg_dr7_io"
t_dr7: .asciz "set_debugreg_dr7"
t_get_dr7: .asciz "get_debugreg_dr7"
t_get_dr6: .asciz "get_debugreg_dr6"
t_dr4: .asciz "set_debugreg_dr4"
t_get_dr8: .asciz "get_debugreg_dr8"
t_gp_hlt: .asciz "gp_hlt_code"
t_gp_cr3: .asciz "gp_cr3_code"
t_gp_count: .asciz "gp_ring1_count"
t_int40_gp: .asciz "int40_dpl0_gp_code"
t_int41: .asciz "int41_count"
t_int3: .asciz "int3_count"
t_nm: .asciz "nm_count"
t_fpu_after_nm: .asciz "fpu_after_nm"
t_de: .asciz "de_count"
t_user_ring: .asciz "user_ring"
t_sys_fast: .asciz "syscall_fast"
t_sys_trap: .asciz "syscall_trap"
t_user_pf_value: .asciz "user_pf_value"
t_user_ring_after_pf: .asciz "user_ring_after_pf"
t_user_gp_count: .asciz "user_gp_count"
t_user_int82: .asciz "user_int82_gp"
t_pf_count: .asciz "pf_count"
t_pf_code: .asciz "pf_error_code"
t_pf_cr2: .asciz "pf_cr2"
t_pf_from_cs: .asciz "pf_from_cs"
.align 4
gp_skip: .long 0
gp_code: .long 0
gp_count: .long 0
user_gp_int82: .long 0
pf_count: .long 0
pf_code: .long 0
pf_cr2: .long 0
pf_from_cs: .long 0
pf_fixup_word: .long 4242
int41_count: .long 0
bp_count: .long 0
nm_count: .long 0
de_count: .long 0
fpu_result: .long 0
fast_count_probe: .long 0
.align 16
.space 2048
ustack_top:
.space 2048
kstack_top:
.space 4096
boot_stack_top:
