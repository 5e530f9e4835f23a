# failsafe_test: Xen's failsafe callback on a real machine. A ring-3 program loads
# DS and ES with a ring-3 data selector from the domain's own GDT (set_gdt), and its
# kernel then makes that descriptor not-present with update_descriptor. The next
# trap from ring 3 is bounced through the hypervisor's entry code, whose reload of
# the saved DS faults (#NP) at ring 0: Xen then enters the failsafe callback with
# the four saved selectors below the frame of the bounce that failed. The handler
# records them, drops them and returns into that bounce (the system-call handler).
# With "no_failsafe=1" on the command line no failsafe callback is registered and the
# domain must crash at that point, as in Xen.

.equ HYPERVISOR_set_trap_table, 0
.equ HYPERVISOR_set_gdt, 2
.equ HYPERVISOR_stack_switch, 3
.equ HYPERVISOR_update_descriptor, 10
.equ FLAT_RING1_DS, 0x0821
.equ FLAT_RING3_CS, 0x082b
.equ FLAT_RING3_DS, 0x0833
.equ USER_SEL, 0x13               # GDT entry 2, RPL 3
.equ GDT_VA, 0xC0300000
.equ SYS_BREAK_DS, 1
.equ SYS_EXIT, 2

guest_main:
    mov ebx, shinfo_page
    mov [shared_va], ebx
    call map_shared_info
    # Command line "no_failsafe=1": register none; the faulting entry crashes us.
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov esi, failsafe
    test eax, eax
    jz have_failsafe
    xor esi, esi
have_failsafe:
    mov eax, HYPERVISOR_set_callbacks      # upcalls stay masked: no events here
    mov ebx, FLAT_RING1_CS
    mov ecx, event_callback_ack
    mov edx, FLAT_RING1_CS
    int 0x82
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, trap_table
    int 0x82
    mov eax, HYPERVISOR_stack_switch
    mov ebx, FLAT_RING1_DS
    mov ecx, kstack_top
    int 0x82
    # A GDT frame with a flat ring-3 data segment at entry 2 (accessed bit preset).
    call first_free_pfn
    call pfn_to_mfn
    mov [gdt_mfn], eax
    mov eax, GDT_VA
    mov edx, [gdt_mfn]
    shl edx, 12
    or edx, 0x27
    mov ecx, UVMF_INVLPG
    call uva
    mov dword ptr [0xC0300010], 0x0000FFFF
    mov dword ptr [0xC0300014], 0x00CFF300
    mov eax, GDT_VA
    xor edx, edx
    mov ecx, UVMF_INVLPG
    call uva
    mov eax, HYPERVISOR_set_gdt
    mov ebx, gdt_mfn
    mov ecx, 512
    int 0x82
    mov esi, t_set_gdt
    call report
    # to ring 3
    push FLAT_RING3_DS
    mov eax, ustack_top
    push eax
    push 0x202
    push FLAT_RING3_CS
    mov eax, user_main
    push eax
    iretd

user_main:
    mov ax, USER_SEL
    mov ds, ax
    mov es, ax
    mov eax, SYS_BREAK_DS
    int 0x81
    mov eax, SYS_EXIT               # this trap's entry faults reloading DS
    int 0x81
user_spin:
    jmp user_spin

# int 0x81 from ring 3: EAX = 1 make USER_SEL not-present, 2 report and power off.
syscall_handler:
    cmp eax, SYS_BREAK_DS
    jne sys_exit
    mov ebx, [gdt_mfn]
    shl ebx, 12
    add ebx, 16
    xor ecx, ecx
    xor edx, edx
    mov eax, HYPERVISOR_update_descriptor
    int 0x82
    mov [break_rc], eax
    iretd
sys_exit:
    mov ax, FLAT_RING1_DS
    mov ds, ax
    mov es, ax
    mov eax, [break_rc]
    mov esi, t_break
    call report
    mov eax, [failsafe_count]
    mov esi, t_count
    call report
    mov eax, [fs_ds]
    mov esi, t_ds
    call report
    mov eax, [fs_es]
    mov esi, t_es
    call report
    mov eax, [fs_cs]
    mov esi, t_cs
    call report
    mov eax, [fs_eip]
    cmp eax, syscall_handler
    sete al
    movzx eax, al
    mov esi, t_eip
    call report
    mov eax, [esp + 4]              # the ring-3 frame below: CS of the trapping code
    mov esi, t_user_cs
    call report
    xor eax, eax
    call shutdown

# Failsafe frame: [DS, ES, FS, GS, EIP, CS, EFLAGS, ESP, SS]; entered with null
# data segments, so load ours before touching memory.
failsafe:
    push eax
    mov ax, FLAT_RING1_DS
    mov ds, ax
    mov es, ax
    inc dword ptr [failsafe_count]
    mov eax, [esp + 4]
    mov [fs_ds], eax
    mov eax, [esp + 8]
    mov [fs_es], eax
    mov eax, [esp + 20]
    mov [fs_eip], eax
    mov eax, [esp + 24]
    mov [fs_cs], eax
    pop eax
    add esp, 16
    iretd

.align 8
trap_table:
    .byte 0x81, 3, 0x19, 0x08
    .long syscall_handler
    .long 0, 0

t_set_gdt: .asciz "set_gdt"
t_break: .asciz "update_descriptor"
t_count: .asciz "failsafe_count"
t_ds: .asciz "failsafe_ds"
t_es: .asciz "failsafe_es"
t_cs: .asciz "failsafe_cs"
t_eip: .asciz "failsafe_eip_is_handler"
t_user_cs: .asciz "trap_from_cs"
.align 4
gdt_mfn: .long 0
break_rc: .long 0
failsafe_count: .long 0
fs_ds: .long 0
fs_es: .long 0
fs_eip: .long 0
fs_cs: .long 0
.align 4096
shinfo_page: .space 4096
.space 2048
ustack_top:
.space 2048
kstack_top:
.space 4096
boot_stack_top:
