# fuzz_regress: focused checks for what the fuzz guest found, one "name=value" line
# each (tests/machine/test_fuzz.py).
#
# ud_*: an invalid opcode (ud2) in ring 1 is a #UD bounced to the guest's handler
# for vector 6, with EIP at the instruction, as Xen 2.0's do_invalid_op does. (The
# domain used to crash: QEMU ends emulation on an invalid opcode instead of raising
# the exception through the interrupt hook.)
#
#
# bad_cs_*: a trap-table entry whose selector VALID_CODESEL accepts but whose
# descriptor cannot be loaded goes to the failsafe callback (see below).
#
# gp_*: a fault right after bytes that read like `int n` is still a fault (with its
# error code), not a software interrupt (see below).
#
# Then hypercalls with known results, printing nothing, for the report's result
# histogram: xen_version(0) > 0, xen_version(1) and number 23 -ENOSYS, a console
# write from the hypervisor area -EFAULT, vm_assist type 3 -EINVAL, dom0_op from a
# domU -EPERM, and a multicall (0) whose one entry's -ENOSYS is not a hypercall of
# its own. With the three trap tables, SET_LDT, set_callbacks, the eleven report
# lines and the final shutdown the domain makes 24 hypercalls.

guest_main:
    mov eax, 0                       # set_trap_table
    mov ebx, regress_traps
    int 0x82
    mov esi, t_trap_table
    call report
ud_site:
    ud2
    mov esi, t_ud_handled
    mov eax, [ud_count]
    call report
    mov eax, [ud_eip]
    cmp eax, ud_site
    sete al
    movzx eax, al
    mov esi, t_ud_eip
    call report

    # A trap-table selector VALID_CODESEL accepts but whose descriptor cannot be read:
    # 0xCB55 is LDT entry 6506, RPL 1, and the LDT (8192 entries at an address nothing
    # maps) has no page there. Delivering int3 to it must fault where Xen's iret to
    # the guest would, into the failsafe callback; it crashed the PCPU (QEMU
    # segfaulted reading the descriptor while the hypervisor loaded CS).
    mov eax, 0x40000000              # MMUEXT_SET_LDT(0x40000000, 8192)
    mov edx, 9 | (8192 << 8)
    call mmu_ext
    mov esi, t_set_ldt
    call report
    mov eax, 4                       # set_callbacks: no event callback, failsafe ours
    mov ebx, 0x0819
    xor ecx, ecx
    mov edx, 0x0819
    mov esi, failsafe_handler
    int 0x82
    mov esi, t_set_callbacks
    call report
    mov eax, 0
    mov ebx, bad_cs_traps
    int 0x82
    mov esi, t_bad_cs_table
    call report
    mov [saved_esp], esp
    int3
after_int3:
    mov esi, t_bad_cs_failsafe
    mov eax, [failsafe_count]
    call report
    mov esi, t_bad_cs_frame
    mov eax, [failsafe_frame_cs]
    call report

    # A #GP (hlt in ring 1) right after the bytes CD 0D, which read like `int 0x0d`:
    # a fault, with its error code below EIP, EIP at the hlt. (It was delivered as
    # `int 0x0d`: the bytes before EIP decided, and the frame had no error code.)
    mov eax, 0
    mov ebx, gp_traps
    int 0x82
    mov esi, t_gp_table
    call report
    mov [saved_esp], esp
    xor eax, eax
    add eax, 0x0DCD0000              # 05 00 00 CD 0D
gp_site:
    hlt
gp_back:
    mov esi, t_gp_frame0
    mov eax, [gp_frame]
    call report
    mov eax, [gp_frame + 4]
    cmp eax, gp_site
    sete al
    movzx eax, al
    mov esi, t_gp_eip
    call report

    mov eax, 17                      # xen_version(0)
    xor ebx, ebx
    int 0x82
    mov eax, 17                      # xen_version(1)
    mov ebx, 1
    int 0x82
    mov eax, 23
    int 0x82
    mov eax, 18                      # console_io(write, 16, 0xFC000000)
    xor ebx, ebx
    mov ecx, 16
    mov edx, 0xFC000000
    int 0x82
    mov eax, 21                      # vm_assist(enable, 3)
    xor ebx, ebx
    mov ecx, 3
    int 0x82
    mov eax, 7                       # dom0_op
    mov ebx, regress_traps
    int 0x82
    mov eax, 13                      # multicall([xen_version(1)], 1)
    mov ebx, regress_multicall
    mov ecx, 1
    int 0x82
    ret

# failsafe: [DS ES FS GS EIP CS EFLAGS] on the stack; note the CS it could not load
failsafe_handler:
    mov ax, 0x0821
    mov ds, ax
    mov es, ax
    inc dword ptr [failsafe_count]
    mov eax, [esp + 20]
    mov [failsafe_frame_cs], eax
    mov esp, [saved_esp]
    jmp after_int3

# #GP: keep the two words on top of the frame, go back
gp_handler:
    mov eax, [esp]
    mov [gp_frame], eax
    mov eax, [esp + 4]
    mov [gp_frame + 4], eax
    mov esp, [saved_esp]
    jmp gp_back

# #UD: note it, step over the 2-byte ud2, return
ud_handler:
    inc dword ptr [ud_count]
    mov eax, [esp]
    mov [ud_eip], eax
    add dword ptr [esp], 2
    iretd

.align 4
regress_traps:
    .byte 6, 0, 0x19, 0x08
    .long ud_handler
    .long 0, 0
bad_cs_traps:
    .byte 3, 3
    .word 0xCB55
    .long bad_cs_handler
    .long 0, 0
bad_cs_handler:
    iretd
gp_traps:
    .byte 13, 1, 0x19, 0x08
    .long gp_handler
    .long 0, 0
gp_frame: .long 0, 0
t_gp_table: .asciz "gp_trap_table"
t_gp_frame0: .asciz "gp_frame_error_code"
t_gp_eip: .asciz "gp_frame_eip_at_hlt"
saved_esp: .long 0
failsafe_count: .long 0
failsafe_frame_cs: .long 0
t_set_ldt: .asciz "set_ldt"
t_set_callbacks: .asciz "set_callbacks"
t_bad_cs_table: .asciz "bad_cs_trap_table"
t_bad_cs_failsafe: .asciz "bad_cs_failsafe"
t_bad_cs_frame: .asciz "bad_cs_failsafe_frame_cs"
regress_multicall:
    .long 17, 1, 0, 0, 0, 0, 0, 0
ud_count: .long 0
ud_eip: .long 0
t_trap_table: .asciz "set_trap_table"
t_ud_handled: .asciz "ud_handled"
t_ud_eip: .asciz "ud_eip_at_instruction"
.align 16
.space 4096
boot_stack_top:
