# mm_ptwritable (hostile): tries to get write access to its own page tables: map
# its L2 and its bootstrap L1 writable (update_va_mapping and mmu_update), write
# Xen's L2 slots, and map its L1 into its L2 writable as a linear table. Every
# line must report -22; the read-only variants stay allowed ("_ro" lines, 0).

guest_main:
    call pt_base_mfn
    mov [l2_mfn], eax
    mov esi, [start_info_ptr]
    mov esi, [esi + 24]
    mov eax, [esi + 768 * 4]
    shr eax, 12
    mov [l1_mfn], eax

    mov eax, 0xC0300000
    mov edx, [l2_mfn]
    shl edx, 12
    or edx, 0x27
    xor ecx, ecx
    call uva
    mov esi, t_l2_rw
    call report
    mov eax, 0xC0300000
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, 0x27
    xor ecx, ecx
    call uva
    mov esi, t_l1_rw
    call report
    # The same through mmu_update on the bootstrap L1's entry for 0xC0300000.
    mov eax, [l1_mfn]
    shl eax, 12
    add eax, 0x300 * 4
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, 0x27
    call mmu_one
    mov esi, t_l1_rw_mmu
    call report
    mov eax, 0xC0300000
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, 0x25
    mov ecx, 2
    call uva
    mov esi, t_l1_ro
    call report
    # Xen's slots of the L2 (1008..1023) are not the guest's.
    mov eax, [l2_mfn]
    shl eax, 12
    add eax, 1009 * 4
    xor edx, edx
    call mmu_one
    mov esi, t_xen_slot
    call report
    # A writable linear page table (L2 entry -> the L2 itself, RW).
    mov eax, [l2_mfn]
    shl eax, 12
    add eax, 800 * 4
    mov edx, [l2_mfn]
    shl edx, 12
    or edx, 0x67
    call mmu_one
    mov esi, t_linear_rw
    call report
    mov eax, [l2_mfn]
    shl eax, 12
    add eax, 800 * 4
    mov edx, [l2_mfn]
    shl edx, 12
    or edx, 0x65
    call mmu_one
    mov esi, t_linear_ro
    call report
    # Through the read-only linear map the guest can read its own L2 entry 768.
    mov eax, [0xC8320C00]          # 0xC8000000 + 800 pages + entry 768
    mov esi, [start_info_ptr]
    mov esi, [esi + 24]
    cmp eax, [esi + 768 * 4]
    sete al
    movzx eax, al
    mov esi, t_linear_read
    call report
    # ... but not write it: a write faults and is not a writable-page-table fault.
    ret

t_l2_rw: .asciz "map_l2_rw"
t_l1_rw: .asciz "map_l1_rw"
t_l1_rw_mmu: .asciz "mmu_l1_rw"
t_l1_ro: .asciz "map_l1_ro"
t_xen_slot: .asciz "xen_slot_write"
t_linear_rw: .asciz "linear_rw"
t_linear_ro: .asciz "linear_ro"
t_linear_read: .asciz "linear_read"
.align 4
l2_mfn: .long 0
l1_mfn: .long 0
.align 16
.space 4096
boot_stack_top:
