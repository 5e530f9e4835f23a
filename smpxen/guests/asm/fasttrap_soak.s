# fasttrap_soak: N system calls from a ring-3 program through the fast trap
# (set_fast_trap 0x80: delivered to the ring-1 handler without leaving the slice).
# The ring-3 loop counts the calls it made and checks each result (the handler
# returns EBX + 1); the handler counts the calls it took. Every count must be N:
# a call run twice or lost shows. Command line "N" (default 100 000). Prints
# user_calls, kernel_calls, bad_results and kcycles.

.equ HYPERVISOR_set_trap_table, 0
.equ HYPERVISOR_stack_switch, 3
.equ HYPERVISOR_set_fast_trap, 11
.equ FLAT_RING1_DS, 0x0821
.equ FLAT_RING3_CS, 0x082b
.equ FLAT_RING3_DS, 0x0833
.equ SYS_NEXT, 1
.equ SYS_EXIT, 2

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz ft_have
    mov eax, 100000
ft_have:
    mov [n_calls], eax
    mov eax, HYPERVISOR_set_trap_table
    mov ebx, trap_table
    int 0x82
    or [setup_errors], eax
    mov eax, HYPERVISOR_stack_switch
    mov ebx, FLAT_RING1_DS
    mov ecx, kstack_top
    int 0x82
    or [setup_errors], eax
    mov eax, HYPERVISOR_set_fast_trap
    mov ebx, 0x80
    int 0x82
    or [setup_errors], eax
    mov eax, [setup_errors]
    mov esi, t_setup
    call report
    call rdtsc_k
    mov [t0], eax
    # to ring 3, with user data segments
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
    mov edi, [n_calls]
u_loop:
    mov eax, SYS_NEXT
    mov ebx, [user_calls]
    int 0x80
    inc dword ptr [user_calls]
    cmp eax, [user_calls]
    je u_ok
    inc dword ptr [bad_results]
u_ok:
    dec edi
    jnz u_loop
    mov eax, SYS_EXIT
    int 0x80
u_spin:
    jmp u_spin

# ------------------------------------------------------------------ ring 1
# EAX = SYS_NEXT: count the call, return EBX + 1; SYS_EXIT: report and power off.
syscall_handler:
    cmp eax, SYS_EXIT
    je sys_exit
    inc dword ptr [kernel_calls]
    lea eax, [ebx + 1]
    iretd
sys_exit:
    mov ax, FLAT_RING1_DS
    mov ds, ax
    mov es, ax
    call rdtsc_k
    sub eax, [t0]
    mov [elapsed_k], eax
    mov esi, t_user
    mov eax, [user_calls]
    call report
    mov esi, t_kernel
    mov eax, [kernel_calls]
    call report
    mov esi, t_bad
    mov eax, [bad_results]
    call report
    mov esi, t_kcycles
    mov eax, [elapsed_k]
    call report
    xor eax, eax
    call shutdown

trap_table:
    .byte 0x80, 3, 0x19, 0x08
    .long syscall_handler
    .long 0, 0

t_setup: .asciz "setup_errors"
t_user: .asciz "user_calls"
t_kernel: .asciz "kernel_calls"
t_bad: .asciz "bad_results"
t_kcycles: .asciz "kcycles"
.align 4
n_calls: .long 0
setup_errors: .long 0
user_calls: .long 0
kernel_calls: .long 0
bad_results: .long 0
t0: .long 0
elapsed_k: .long 0
.space 4096
ustack_top:
.space 4096
kstack_top:
.space 4096
boot_stack_top:
