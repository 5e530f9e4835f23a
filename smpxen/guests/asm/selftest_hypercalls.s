# selftest_hypercalls: exercises the machine issue's hypercalls and prints one
# "name=result" line per call (results are signed: -14 is -EFAULT). The test suite
# checks every line; the first number in the command line selects the shutdown
# reason (0 poweroff, 1 reboot, 2 suspend).

.equ HYPERVISOR_set_trap_table, 0
.equ CONSOLEIO_read, 1

guest_main:
    # xen_version(0) and an unknown sub-command
    mov eax, HYPERVISOR_xen_version
    xor ebx, ebx
    int 0x82
    mov esi, t_version
    call report
    mov eax, HYPERVISOR_xen_version
    mov ebx, 1
    int 0x82
    mov esi, t_version_bad
    call report
    # The hypercall number is masked to 0..31: 32+17 is xen_version.
    mov eax, 49
    xor ebx, ebx
    int 0x82
    mov esi, t_version_masked
    call report
    # Unused numbers return -ENOSYS.
    mov eax, 23
    int 0x82
    mov esi, t_nr23
    call report
    mov eax, 31
    int 0x82
    mov esi, t_nr31
    call report

    # console_io: a good write returns the count; bad pointers give -EFAULT.
    mov eax, HYPERVISOR_console_io
    mov ebx, CONSOLEIO_write
    mov ecx, 6
    mov edx, msg_hi
    int 0x82
    mov esi, t_cons_write
    call report
    mov eax, HYPERVISOR_console_io
    mov ebx, CONSOLEIO_write
    mov ecx, 16
    mov edx, 0x00001000
    int 0x82
    mov esi, t_cons_unmapped
    call report
    mov eax, HYPERVISOR_console_io
    mov ebx, CONSOLEIO_write
    mov ecx, 16
    mov edx, 0xFC000000
    int 0x82
    mov esi, t_cons_hv
    call report
    mov eax, HYPERVISOR_console_io
    mov ebx, CONSOLEIO_write
    mov ecx, 0
    mov edx, msg_hi
    int 0x82
    mov esi, t_cons_empty
    call report
    mov eax, HYPERVISOR_console_io
    mov ebx, CONSOLEIO_read
    mov ecx, 16
    mov edx, scratch
    int 0x82
    mov esi, t_cons_read
    call report
    mov eax, HYPERVISOR_console_io
    mov ebx, 7
    int 0x82
    mov esi, t_cons_badcmd
    call report

    # vm_assist
    mov eax, HYPERVISOR_vm_assist
    mov ebx, 0
    mov ecx, 2
    int 0x82
    mov esi, t_vmassist_enable
    call report
    mov eax, HYPERVISOR_vm_assist
    mov ebx, 1
    mov ecx, 2
    int 0x82
    mov esi, t_vmassist_disable
    call report
    mov eax, HYPERVISOR_vm_assist
    mov ebx, 0
    mov ecx, 3
    int 0x82
    mov esi, t_vmassist_badtype
    call report
    mov eax, HYPERVISOR_vm_assist
    mov ebx, 9
    mov ecx, 0
    int 0x82
    mov esi, t_vmassist_badcmd
    call report

    # sched_op: yield returns 0, an unknown command -ENOSYS
    mov eax, HYPERVISOR_sched_op
    mov ebx, SCHEDOP_yield
    int 0x82
    mov esi, t_yield
    call report
    mov eax, HYPERVISOR_sched_op
    mov ebx, 9
    int 0x82
    mov esi, t_sched_bad
    call report

    # multicall: three calls, results land in each entry's args[5]
    mov eax, HYPERVISOR_multicall
    mov ebx, mc_list
    mov ecx, 4
    int 0x82
    mov esi, t_mc
    call report
    mov eax, [mc_list + 24]
    mov esi, t_mc0
    call report
    mov eax, [mc_list + 32 + 24]
    mov esi, t_mc1
    call report
    mov eax, [mc_list + 64 + 24]
    mov esi, t_mc2
    call report
    mov eax, [mc_list + 96 + 24]
    mov esi, t_mc3
    call report
    # a list at a wild address
    mov eax, HYPERVISOR_multicall
    mov ebx, 0x00002000
    mov ecx, 2
    int 0x82
    mov esi, t_mc_wild
    call report

    # shut down with the reason from the command line
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    call shutdown

t_version: .asciz "xen_version"
t_version_bad: .asciz "xen_version_cmd1"
t_version_masked: .asciz "xen_version_masked"
t_nr23: .asciz "hypercall23"
t_nr31: .asciz "hypercall31"
t_cons_write: .asciz "console_write"
t_cons_unmapped: .asciz "console_unmapped"
t_cons_hv: .asciz "console_hypervisor"
t_cons_empty: .asciz "console_empty"
t_cons_read: .asciz "console_read"
t_cons_badcmd: .asciz "console_badcmd"
t_vmassist_enable: .asciz "vm_assist_enable"
t_vmassist_disable: .asciz "vm_assist_disable"
t_vmassist_badtype: .asciz "vm_assist_badtype"
t_vmassist_badcmd: .asciz "vm_assist_badcmd"
t_yield: .asciz "yield"
t_sched_bad: .asciz "sched_op_bad"
t_mc: .asciz "multicall"
t_mc0: .asciz "multicall_0"
t_mc1: .asciz "multicall_1"
t_mc2: .asciz "multicall_2"
t_mc3: .asciz "multicall_3"
t_mc_wild: .asciz "multicall_wild"
msg_hi: .ascii "hi-mc\n"
.align 32
mc_list:
    # xen_version(0)
    .long HYPERVISOR_xen_version, 0, 0, 0, 0, 0, 0x55555555, 0
    # console_io(write, 6, msg_hi)
    .long HYPERVISOR_console_io, CONSOLEIO_write, 6, msg_hi, 0, 0, 0x55555555, 0
    # a nested multicall is skipped: args[5] keeps its value
    .long HYPERVISOR_multicall, 0, 0, 0, 0, 0, 0x55555555, 0
    # console_io with a wild buffer: -EFAULT for this entry only
    .long HYPERVISOR_console_io, CONSOLEIO_write, 4, 0x00003000, 0, 0, 0x55555555, 0
scratch: .space 64
.align 16
.space 4096
boot_stack_top:
