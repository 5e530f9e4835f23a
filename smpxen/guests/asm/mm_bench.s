# mm_bench: timing loops for `smpxen bench` (prints kilocycles per phase).
# A fresh L1 is pinned and hooked at NEWVA; then
#   batched: ROUNDS x (one mmu_update of 64 entries mapping, one of 64 unmapping)
#   single:  ROUNDS x 64 x (one-entry mmu_update map + one-entry unmap)
#   wrpt:    ROUNDS x (direct PTE write -> writable-page-table fault, touch NEWVA ->
#            revalidation, direct unmap write -> fault, TLB-flush hypercall)
# ROUNDS = first number on the command line (default 100).

.equ BATCH, 64
.equ PTE_RO, 0x25
.equ PTE_RW, 0x27
.equ PDE_RW, 0x67
.equ NEWSLOT, 784

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    test eax, eax
    jnz mb_have
    mov eax, 100
mb_have:
    mov [rounds], eax
    mov eax, 21                     # writable page tables on
    mov ebx, 0
    mov ecx, 2
    int 0x82
    call pt_base_mfn
    mov [l2_mfn], eax
    call first_free_pfn
    mov ebx, eax
    call pfn_to_mfn
    mov [l1_mfn], eax
    lea eax, [ebx + 1]
    call pfn_to_mfn
    mov [data_mfn], eax
    mov eax, [l1_mfn]
    shl eax, 12
    mov edx, 0                      # pin L1
    call mmu_ext
    or [errors], eax
    mov eax, [l2_mfn]
    shl eax, 12
    add eax, NEWSLOT * 4
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, PDE_RW
    call mmu_one
    or [errors], eax
    # Request lists: map[i] = (l1 entry i, data | RO), unmap[i] = (l1 entry i, 0).
    xor ecx, ecx
mb_fill:
    mov eax, [l1_mfn]
    shl eax, 12
    lea eax, [eax + ecx * 4]
    mov [map_reqs + ecx * 8], eax
    mov [unmap_reqs + ecx * 8], eax
    mov edx, [data_mfn]
    shl edx, 12
    or edx, PTE_RO
    mov [map_reqs + ecx * 8 + 4], edx
    mov dword ptr [unmap_reqs + ecx * 8 + 4], 0
    inc ecx
    cmp ecx, BATCH
    jb mb_fill

    call rdtsc_k
    mov [t0], eax
    mov edi, [rounds]
mb_batched:
    mov eax, 1
    mov ebx, map_reqs
    mov ecx, BATCH
    xor edx, edx
    push edi
    int 0x82
    pop edi
    or [errors], eax
    mov eax, 1
    mov ebx, unmap_reqs
    mov ecx, BATCH
    xor edx, edx
    push edi
    int 0x82
    pop edi
    or [errors], eax
    dec edi
    jnz mb_batched
    call rdtsc_k
    sub eax, [t0]
    mov esi, t_batched
    call report

    call rdtsc_k
    mov [t0], eax
    mov edi, [rounds]
mb_single_round:
    xor esi, esi
mb_single:
    mov eax, 1
    lea ebx, [map_reqs + esi * 8]
    mov ecx, 1
    xor edx, edx
    int 0x82
    or [errors], eax
    mov eax, 1
    lea ebx, [unmap_reqs + esi * 8]
    mov ecx, 1
    xor edx, edx
    int 0x82
    or [errors], eax
    inc esi
    cmp esi, BATCH
    jb mb_single
    dec edi
    jnz mb_single_round
    call rdtsc_k
    sub eax, [t0]
    mov esi, t_single
    call report

    # Writable page tables: map the L1 read-only at 0xC0300000 and write it directly.
    mov eax, 0xC0300000
    mov edx, [l1_mfn]
    shl edx, 12
    or edx, PTE_RO
    mov ecx, 2
    call uva
    or [errors], eax
    call rdtsc_k
    mov [t0], eax
    mov edi, [rounds]
    mov edx, [data_mfn]
    shl edx, 12
    or edx, PTE_RW
mb_wrpt:
    mov [0xC0300000 + 4], edx       # fault 1: the L1 becomes writable, disconnected
    mov eax, [0xC4001000]           # touch: revalidate and reconnect
    mov dword ptr [0xC0300000 + 4], 0   # fault 2
    push edx
    xor eax, eax
    mov edx, 6                      # MMUEXT_TLB_FLUSH: flushes the writable L1 too
    call mmu_ext
    pop edx
    or [errors], eax
    dec edi
    jnz mb_wrpt
    call rdtsc_k
    sub eax, [t0]
    mov esi, t_wrpt
    call report
    mov eax, [errors]
    mov esi, t_errors
    call report
    ret

t_batched: .asciz "batched_kcycles"
t_single: .asciz "single_kcycles"
t_wrpt: .asciz "wrpt_kcycles"
t_errors: .asciz "errors"
.align 4
rounds: .long 0
l2_mfn: .long 0
l1_mfn: .long 0
data_mfn: .long 0
errors: .long 0
t0: .long 0
map_reqs: .space 8 * BATCH
unmap_reqs: .space 8 * BATCH
.align 16
.space 4096
boot_stack_top:
