# mm_wrpt: writable page tables (VMASST_TYPE_writable_pagetables). The guest hooks
# a fresh L1 into its L2 at NEWVA, maps that L1 read-only at L1VA and then simply
# writes PTEs into it with mov: each first write faults and the hypervisor lets it
# through (disconnecting the L1); touching NEWVA reconnects it after revalidation.
# Command line: N > 0 runs N rounds and checks every read ("wrpt_errors=0");
# 0 (or nothing) is the hostile variant: it writes an entry mapping a frame of the
# hypervisor region and touches NEWVA, which must crash the domain at reconnection.

.equ PTE_RW, 0x27
.equ PTE_RO, 0x25
.equ PDE_RW, 0x67
.equ NEWSLOT, 784               # NEWVA = 0xC4000000
.equ L1VA, 0xC0300000           # unused page of the bootstrap L1

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov [rounds], eax

    mov eax, 21                     # vm_assist(enable, writable_pagetables)
    mov ebx, 0
    mov ecx, 2
    int 0x82
    mov esi, t_vmassist
    call report

    call pt_base_mfn
    mov [l2_mfn], eax
    call first_free_pfn
    mov ebx, eax
    call pfn_to_mfn
    mov [l1_mfn], eax
    xor ecx, ecx
wr_fill:
    lea eax, [ebx + ecx + 1]
    call pfn_to_mfn
    mov [data_mfn + ecx * 4], eax
    inc ecx
    cmp ecx, 4
    jb wr_fill

    # Pin the fresh (zeroed) L1, hook it at NEWSLOT, map it read-only at L1VA.
    mov eax, [l1_mfn]
    shl eax, 12
    mov edx, 0                      # MMUEXT_PIN_L1_TABLE
    call mmu_ext
    mov esi, t_pin
    call report
    mov eax, [l2_mfn]
    shl eax, 12
    add eax, NEWSLOT * 4
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, PDE_RW
    call mmu_one
    mov esi, t_hook
    call report
    mov eax, 0xC0300000
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, PTE_RO
    mov ecx, 2
    call uva
    mov esi, t_map_l1
    call report

    cmp dword ptr [rounds], 0
    je wr_hostile

    xor edi, edi
    mov dword ptr [errors], 0
wr_round:
    mov ebx, edi
    and ebx, 3                      # entry and data frame k % 4
    mov edx, [data_mfn + ebx * 4]
    shl edx, 12
    or edx, PTE_RW
    mov [0xC0300000 + ebx * 4], edx       # a direct PTE write: the writable-page-table fault
    mov ecx, ebx
    shl ecx, 12
    add ecx, 0xC4000000             # NEWVA + k%4 pages: reconnects the L1
    mov eax, [ecx]
    cmp eax, [expect + ebx * 4]
    je wr_seen
    inc dword ptr [errors]
wr_seen:
    lea eax, [edi + 0x100]
    mov [ecx], eax
    mov [expect + ebx * 4], eax
    mov eax, [ecx]
    cmp eax, [expect + ebx * 4]
    je wr_back
    inc dword ptr [errors]
wr_back:
    # Unmap it again through a direct write too (a strict reduction: no revalidation).
    mov dword ptr [0xC0300000 + ebx * 4], 0
    mov eax, 0
    mov edx, 6                      # MMUEXT_TLB_FLUSH (also flushes the writable L1)
    call mmu_ext
    or [errors], eax
    inc edi
    cmp edi, [rounds]
    jb wr_round
    mov eax, [errors]
    mov esi, t_errors
    call report
    mov eax, edi
    mov esi, t_rounds
    call report

    # A hypercall argument in the disconnected 4 MiB region: as Xen's page-fault path
    # does for its own accesses, the hypervisor reconnects the L1 and the call goes
    # through (event_channel_op status of our port 0, its op at NEWVA).
    mov edx, [data_mfn]
    shl edx, 12
    or edx, PTE_RW
    mov [0xC0300000], edx           # entry 0 -> data page 0 (disconnects the L1)
    mov dword ptr [0xC4000000], EVTCHNOP_status   # (reconnects it)
    mov dword ptr [0xC4000004], 0
    mov word ptr [0xC4000008], DOMID_SELF
    mov dword ptr [0xC400000C], 0
    mov dword ptr [0xC4000010], 0xFFFFFFFF
    mov dword ptr [0xC0300004], 0   # another direct write: disconnected again
    mov eax, HYPERVISOR_event_channel_op
    mov ebx, 0xC4000000
    int 0x82
    mov esi, t_arg_disc
    call report
    mov eax, [0xC4000010]           # the status it wrote back (EVTCHNSTAT_virq)
    mov esi, t_arg_status
    call report
    ret

wr_hostile:
    mov dword ptr [0xC0300000 + 4], 0x00001027      # maps hypervisor frame 1, writable
    mov eax, [0xC4001000]                     # reconnection must refuse it
    mov esi, t_survived
    call report
    ret

t_vmassist: .asciz "vm_assist"
t_pin: .asciz "pin_l1"
t_hook: .asciz "hook_l1"
t_map_l1: .asciz "map_l1_ro"
t_errors: .asciz "wrpt_errors"
t_rounds: .asciz "wrpt_rounds"
t_survived: .asciz "bad_entry_survived"
t_arg_disc: .asciz "arg_in_disconnected"
t_arg_status: .asciz "arg_status"
.align 4
rounds: .long 0
l2_mfn: .long 0
l1_mfn: .long 0
errors: .long 0
data_mfn: .long 0, 0, 0, 0
expect: .long 0, 0, 0, 0
.align 16
.space 4096
boot_stack_top:
