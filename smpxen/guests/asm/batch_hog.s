# batch_hog: very long hypercall batches (what preemption must cope with).
# Command line "N K": K times, one mmu_update of N requests (they map and unmap one
# page in turn, each fully validated) and one multicall of N xen_version(0) calls;
# every result is checked. The lists (40 bytes a request) live in memory the guest
# maps for itself above its bootstrap region: L1 tables filled with mmu_update's
# raw writes to its own unmapped frames, pinned and hooked into its L2 from slot
# EXTRA_SLOT on. Prints mmu_errors, multicall_errors, batches, mmu_kcycles,
# multicall_kcycles (kilocycles of all batches of each kind).

.equ EXTRA_SLOT, 800                # 0xC8000000
.equ EXTRA_VA, 0xC8000000
.equ TOGGLE_SLOT, 784               # 0xC4000000: the page the mmu requests map and unmap
.equ PTE_RO, 0x25
.equ PTE_RW, 0x27
.equ PDE_RW, 0x67
.equ MMUEXT_PIN_L1, 0
.equ MC_SIZE, 32
.equ MC_RESULT, 24                  # args[5]
.equ XEN_VERSION_2_0, 0x00020000

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    and eax, 0xFFFFFFFE             # even: the page ends unmapped
    jz bh_usage
    mov [n_reqs], eax
    call parse_uint
    test eax, eax
    jz bh_usage
    mov [k_batches], eax
    call pt_base_mfn
    shl eax, 12
    mov [l2_ma], eax
    # The bootstrap region maps pseudo-physical frames 0 .. U-1, U = (L1 count) * 1024.
    mov esi, [start_info_ptr]
    mov eax, [esi + 32]             # nr_pt_frames: the L2 and the L1s
    dec eax
    shl eax, 10
    mov [next_pfn], eax
    # Pages for the lists: ceil(N * 40 / 4096); chunks of 1024 pages, each + 1 L1.
    mov eax, [n_reqs]
    mov ecx, 40
    mul ecx
    add eax, 4095
    shr eax, 12
    add eax, 1023
    shr eax, 10
    mov [chunks], eax
    # Enough frames? chunks * 1025 + 2 (the toggle L1 and its page) past U.
    mov ecx, 1025
    mul ecx
    add eax, 2
    add eax, [next_pfn]
    mov esi, [start_info_ptr]
    cmp eax, [esi + START_INFO_NR_PAGES]
    ja bh_too_small

    xor edi, edi
bh_map:
    mov eax, [next_pfn]
    lea ebx, [eax + 1]
    lea ecx, [edi + EXTRA_SLOT]
    call map_chunk
    or [setup_errors], eax
    add dword ptr [next_pfn], 1025
    inc edi
    cmp edi, [chunks]
    jb bh_map

    # The toggle page: a fresh L1 (zeroed by the hypervisor) pinned at TOGGLE_SLOT.
    mov eax, [next_pfn]
    call pfn_to_mfn
    shl eax, 12
    mov [toggle_l1_ma], eax
    mov edx, MMUEXT_PIN_L1
    call mmu_ext
    or [setup_errors], eax
    mov eax, [l2_ma]
    add eax, TOGGLE_SLOT * 4
    mov edx, [toggle_l1_ma]
    or edx, PDE_RW
    call mmu_one
    or [setup_errors], eax
    mov eax, [next_pfn]
    inc eax
    call pfn_to_mfn
    shl eax, 12
    or eax, PTE_RO
    mov [toggle_pte], eax

    # mmu list at EXTRA_VA: (toggle entry 0, page | RO), (toggle entry 0, 0), ...
    mov edi, EXTRA_VA
    xor ecx, ecx
bh_fill_mmu:
    mov eax, [toggle_l1_ma]
    mov [edi + ecx * 8], eax
    mov edx, [toggle_pte]
    test ecx, 1
    jz bh_map_req
    xor edx, edx
bh_map_req:
    mov [edi + ecx * 8 + 4], edx
    inc ecx
    cmp ecx, [n_reqs]
    jb bh_fill_mmu
    lea eax, [edi + ecx * 8]
    mov [mc_list], eax
    # multicall list right after it: xen_version(0) N times (the image is zeroed).
    mov edi, eax
    xor ecx, ecx
bh_fill_mc:
    mov dword ptr [edi], HYPERVISOR_xen_version
    add edi, MC_SIZE
    inc ecx
    cmp ecx, [n_reqs]
    jb bh_fill_mc
    mov eax, [setup_errors]
    mov esi, t_setup
    call report
    cmp dword ptr [setup_errors], 0
    jne bh_done

    mov ebp, [k_batches]
bh_batch:
    call rdtsc_k
    mov [t0], eax
    mov dword ptr [done], 0
    mov eax, 1
    mov ebx, EXTRA_VA
    mov ecx, [n_reqs]
    mov edx, done
    xor esi, esi
    int 0x82
    test eax, eax
    jnz bh_mmu_bad
    mov eax, [done]
    cmp eax, [n_reqs]
    je bh_mmu_ok
bh_mmu_bad:
    inc dword ptr [mmu_errors]
bh_mmu_ok:
    call rdtsc_k
    sub eax, [t0]
    add [mmu_k], eax

    mov edi, [mc_list]              # results start as -1: each must become 2.0
    xor ecx, ecx
bh_clear:
    mov dword ptr [edi + MC_RESULT], 0xFFFFFFFF
    add edi, MC_SIZE
    inc ecx
    cmp ecx, [n_reqs]
    jb bh_clear
    call rdtsc_k
    mov [t0], eax
    mov eax, HYPERVISOR_multicall
    mov ebx, [mc_list]
    mov ecx, [n_reqs]
    int 0x82
    test eax, eax
    jz bh_mc_ran
    inc dword ptr [mc_errors]
bh_mc_ran:
    call rdtsc_k
    sub eax, [t0]
    add [mc_k], eax
    mov edi, [mc_list]
    xor ecx, ecx
bh_check:
    cmp dword ptr [edi + MC_RESULT], XEN_VERSION_2_0
    je bh_check_ok
    inc dword ptr [mc_errors]
bh_check_ok:
    add edi, MC_SIZE
    inc ecx
    cmp ecx, [n_reqs]
    jb bh_check
    inc dword ptr [batches]
    dec ebp
    jnz bh_batch

bh_done:
    mov esi, t_mmu_errors
    mov eax, [mmu_errors]
    call report
    mov esi, t_mc_errors
    mov eax, [mc_errors]
    call report
    mov esi, t_batches
    mov eax, [batches]
    call report
    mov esi, t_mmu_k
    mov eax, [mmu_k]
    call report
    mov esi, t_mc_k
    mov eax, [mc_k]
    call report
    ret
bh_usage:
    mov esi, t_usage
    mov eax, -1
    call report
    ret
bh_too_small:
    mov esi, t_too_small
    mov eax, -1
    call report
    ret

# map_chunk(EAX = pfn for a new L1, EBX = first of 1024 data pfns, ECX = L2 slot)
# -> EAX = 0 if all went well: the L1 gets 1024 read-write mappings of the data
# frames (raw writes, the frame is not a page table yet), then is pinned and hooked.
map_chunk:
    push ebx
    push ecx
    push edx
    push edi
    push ebp
    mov ebp, ecx
    call pfn_to_mfn
    shl eax, 12
    mov [chunk_l1_ma], eax
    xor edi, edi
mc_fill:
    lea eax, [ebx + edi]
    call pfn_to_mfn
    shl eax, 12
    or eax, PTE_RW
    mov [fill_reqs + edi * 8 + 4], eax
    mov eax, [chunk_l1_ma]
    lea eax, [eax + edi * 4]
    mov [fill_reqs + edi * 8], eax
    inc edi
    cmp edi, 1024
    jb mc_fill
    mov eax, 1
    mov ebx, fill_reqs
    mov ecx, 1024
    xor edx, edx
    int 0x82
    mov [chunk_rc], eax
    mov eax, [chunk_l1_ma]
    mov edx, MMUEXT_PIN_L1
    call mmu_ext
    or [chunk_rc], eax
    mov eax, [l2_ma]
    lea eax, [eax + ebp * 4]
    mov edx, [chunk_l1_ma]
    or edx, PDE_RW
    call mmu_one
    or eax, [chunk_rc]
    pop ebp
    pop edi
    pop edx
    pop ecx
    pop ebx
    ret

t_setup: .asciz "setup_errors"
t_mmu_errors: .asciz "mmu_errors"
t_mc_errors: .asciz "multicall_errors"
t_batches: .asciz "batches"
t_mmu_k: .asciz "mmu_kcycles"
t_mc_k: .asciz "multicall_kcycles"
t_usage: .asciz "usage_N_K"
t_too_small: .asciz "memory_too_small"
.align 4
n_reqs: .long 0
k_batches: .long 0
l2_ma: .long 0
next_pfn: .long 0
chunks: .long 0
toggle_l1_ma: .long 0
toggle_pte: .long 0
mc_list: .long 0
setup_errors: .long 0
chunk_l1_ma: .long 0
chunk_rc: .long 0
done: .long 0
t0: .long 0
mmu_k: .long 0
mc_k: .long 0
mmu_errors: .long 0
mc_errors: .long 0
batches: .long 0
fill_reqs: .space 8192
.space 4096
boot_stack_top:
