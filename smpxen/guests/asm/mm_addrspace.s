# mm_addrspace: builds a second address space and lives in it for a while.
# A new L1 and L2 are written through mmu_update (they are plain unmapped frames,
# so each write is checked), pinned, and the L2 becomes the base pointer. Then, in
# a loop, data frames are mapped and unmapped at NEWVA with update_va_mapping and
# mmu_update, and every read is checked against what was last written into that
# frame. Finally the guest switches back and unpins. Prints one line per check;
# the first number on the command line is the loop count (default 200).

.equ NEWVA, 0xC4000000          # L2 slot 784, far from the bootstrap region
.equ NEWSLOT, 784
.equ PTE_RW, 0x27               # present, writable, user, accessed
.equ PTE_RO, 0x25
.equ PDE_RW, 0x67
.equ NDATA, 3

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz have_loops
    mov eax, 200
have_loops:
    mov [loops], eax

    mov esi, [start_info_ptr]
    mov eax, [esi + 24]
    mov [pt_base], eax
    sub eax, 0xC0000000
    shr eax, 12
    call pfn_to_mfn
    mov [old_l2], eax
    call first_free_pfn
    mov [free_pfn], eax
    call pfn_to_mfn
    mov [new_l2], eax
    mov eax, [free_pfn]
    inc eax
    call pfn_to_mfn
    mov [new_l1], eax
    xor ecx, ecx
fill_data:
    mov eax, [free_pfn]
    add eax, 2
    add eax, ecx
    call pfn_to_mfn
    mov [data_mfn + ecx * 4], eax
    mov dword ptr [expect + ecx * 4], 0
    inc ecx
    cmp ecx, NDATA + 1
    jb fill_data

    # New L1: entry 0 maps data frame 3 writable.
    mov eax, [new_l1]
    shl eax, 12
    mov edx, [data_mfn + 12]
    shl edx, 12
    or edx, PTE_RW
    call mmu_one
    mov esi, t_build_l1
    call report
    # New L2: copy the bootstrap slot (our code, data and stack), hook the new L1.
    mov esi, [pt_base]
    mov edx, [esi + 768 * 4]
    mov eax, [new_l2]
    shl eax, 12
    add eax, 768 * 4
    call mmu_one
    mov ebx, eax
    mov edx, [new_l1]
    shl edx, 12
    or edx, PDE_RW
    mov eax, [new_l2]
    shl eax, 12
    add eax, NEWSLOT * 4
    call mmu_one
    or eax, ebx
    mov esi, t_build_l2
    call report

    # Pin both (the L1 first: a pinned L1 must be pinned before any other use).
    mov eax, [new_l1]
    shl eax, 12
    mov edx, 0                      # MMUEXT_PIN_L1_TABLE
    call mmu_ext
    mov esi, t_pin_l1
    call report
    mov eax, [new_l2]
    shl eax, 12
    mov edx, 1                      # MMUEXT_PIN_L2_TABLE
    call mmu_ext
    mov esi, t_pin_l2
    call report
    # The pinned L1 can no longer be written as a plain frame.
    mov eax, [new_l1]
    shl eax, 12
    add eax, 8
    mov edx, [new_l1]
    shl edx, 12
    or edx, PTE_RW
    call mmu_one
    mov esi, t_l1_self_rw
    call report

    # Switch to the new address space.
    mov eax, [new_l2]
    shl eax, 12
    mov edx, 5                      # MMUEXT_NEW_BASEPTR
    call mmu_ext
    mov esi, t_baseptr
    call report
    mov dword ptr [0xC4000000], 0x5A5A1234
    mov eax, [0xC4000000]
    cmp eax, 0x5A5A1234
    sete al
    movzx eax, al
    mov esi, t_newva_rw
    call report

    # The loop: map frame k%3 at page 1 (update_va_mapping, writable) and at page 2
    # (mmu_update, read-only); check, write, read back, unmap both.
    xor edi, edi
    mov dword ptr [errors], 0
map_loop:
    mov eax, edi
    xor edx, edx
    mov ecx, NDATA
    div ecx
    mov ebx, edx                    # ebx = k % 3
    mov edx, [data_mfn + ebx * 4]
    shl edx, 12
    or edx, PTE_RW
    mov eax, 0xC4001000
    mov ecx, 2                      # UVMF_INVLPG
    call uva
    or [errors], eax
    mov eax, [0xC4001000]
    cmp eax, [expect + ebx * 4]
    je map_loop_seen
    inc dword ptr [errors]
map_loop_seen:
    lea eax, [edi + 0x1000]
    mov [0xC4001000], eax
    mov [expect + ebx * 4], eax
    mov eax, [new_l1]
    shl eax, 12
    add eax, 8                      # entry 2
    mov edx, [data_mfn + ebx * 4]
    shl edx, 12
    or edx, PTE_RO
    call mmu_one
    or [errors], eax
    mov eax, 0
    mov edx, 7                      # MMUEXT_INVLPG (ptr = the address)
    mov eax, 0xC4002000
    call mmu_ext
    or [errors], eax
    mov eax, [0xC4002000]
    cmp eax, [expect + ebx * 4]
    je map_loop_ro_ok
    inc dword ptr [errors]
map_loop_ro_ok:
    mov eax, 0xC4001000
    xor edx, edx
    mov ecx, 2
    call uva
    or [errors], eax
    mov eax, [new_l1]
    shl eax, 12
    add eax, 8
    xor edx, edx
    call mmu_one
    or [errors], eax
    xor eax, eax
    mov edx, 6                      # MMUEXT_TLB_FLUSH
    call mmu_ext
    or [errors], eax
    inc edi
    cmp edi, [loops]
    jb map_loop
    mov eax, [errors]
    mov esi, t_loop_errors
    call report
    mov eax, edi
    mov esi, t_loops
    call report

    # machine->phys update, seen through the read-only M2P at 0xFC000000.
    mov eax, [data_mfn]
    shl eax, 12
    or eax, 2                       # MMU_MACHPHYS_UPDATE
    mov edx, 0x00ABCDEF
    call mmu_one
    mov esi, t_m2p_update
    call report
    mov ebx, [data_mfn]
    mov eax, [0xFC000000 + ebx * 4]
    cmp eax, 0x00ABCDEF
    sete al
    movzx eax, al
    mov esi, t_m2p_seen
    call report

    # Back to the bootstrap address space; unpin; the tables are plain frames again.
    mov eax, [old_l2]
    shl eax, 12
    mov edx, 5
    call mmu_ext
    mov esi, t_baseptr_back
    call report
    mov eax, [new_l2]
    shl eax, 12
    mov edx, 4                      # MMUEXT_UNPIN_TABLE
    call mmu_ext
    mov esi, t_unpin_l2
    call report
    mov eax, [new_l1]
    shl eax, 12
    mov edx, 4
    call mmu_ext
    mov esi, t_unpin_l1
    call report
    mov eax, [new_l1]
    shl eax, 12
    add eax, 8
    xor edx, edx
    call mmu_one
    mov esi, t_l1_plain
    call report
    ret

t_build_l1: .asciz "build_l1"
t_build_l2: .asciz "build_l2"
t_pin_l1: .asciz "pin_l1"
t_pin_l2: .asciz "pin_l2"
t_l1_self_rw: .asciz "pinned_l1_raw_write"
t_baseptr: .asciz "new_baseptr"
t_newva_rw: .asciz "newva_rw_ok"
t_loop_errors: .asciz "loop_errors"
t_loops: .asciz "loops"
t_m2p_update: .asciz "m2p_update"
t_m2p_seen: .asciz "m2p_seen"
t_baseptr_back: .asciz "baseptr_back"
t_unpin_l2: .asciz "unpin_l2"
t_unpin_l1: .asciz "unpin_l1"
t_l1_plain: .asciz "unpinned_l1_raw_write"
.align 4
loops: .long 0
pt_base: .long 0
old_l2: .long 0
free_pfn: .long 0
new_l2: .long 0
new_l1: .long 0
errors: .long 0
data_mfn: .long 0, 0, 0, 0
expect: .long 0, 0, 0, 0
.align 16
.space 4096
boot_stack_top:
