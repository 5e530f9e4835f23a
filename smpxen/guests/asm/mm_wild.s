# mm_wild (hostile): wild pointers and huge counts to the memory hypercalls.
# Expected: -14 (-EFAULT) for unreadable request lists, -22 for bad arguments,
# 0 extents for bad extent lists. An mmu_update count with the top bit set is taken
# for a continuation of a preempted batch (its foreign domain in ESI): here of one
# with foreign domain 0x7FFF, which does not exist (-EINVAL), and *success_count
# keeps what it held.

guest_main:
    mov eax, 1                       # mmu_update(NULL, 1, NULL)
    xor ebx, ebx
    mov ecx, 1
    xor edx, edx
    int 0x82
    mov esi, t_null
    call report
    mov eax, 1                       # a list running into the hypervisor area
    mov ebx, 0xFBFFFFF8
    mov ecx, 2
    xor edx, edx
    int 0x82
    mov esi, t_cross
    call report
    mov eax, 1                       # a list inside the hypervisor area
    mov ebx, 0xFC000000
    mov ecx, 1
    xor edx, edx
    int 0x82
    mov esi, t_hv_list
    call report
    mov eax, 1                       # a huge count
    mov ebx, reqs
    mov ecx, 0x7FFFFFFF
    xor edx, edx
    int 0x82
    mov esi, t_huge
    call report
    mov dword ptr [done], 0x55
    mov eax, 1                       # top bit set: a continuation, foreign domain 0x7FFF
    mov ebx, reqs
    mov ecx, 0xFFFFFFFF
    mov edx, done
    mov esi, 0x7FFF
    int 0x82
    mov esi, t_negative
    call report
    mov eax, [done]
    mov esi, t_negative_done
    call report
    mov eax, 1                       # a good list with a wild success-count pointer
    mov ebx, reqs
    mov ecx, 1
    mov edx, 0xFC001000
    int 0x82
    mov esi, t_wild_count
    call report
    mov eax, 14                      # update_va_mapping in the hypervisor area
    mov ebx, 0xFC000
    xor ecx, ecx
    xor edx, edx
    int 0x82
    mov esi, t_uvm_hv
    call report
    mov eax, 14                      # a PTE whose L2 entry is not present
    mov ebx, 0x00010
    mov ecx, 0x00000025
    xor edx, edx
    int 0x82
    mov esi, t_uvm_nopt
    call report
    mov eax, 12                      # dom_mem_op with a wild extent list
    mov ebx, 1
    mov ecx, 0x00005000
    mov edx, 4
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    mov esi, t_memop_wild
    call report
    mov eax, 12                      # ... and a huge extent count
    mov ebx, 0
    mov ecx, reqs
    mov edx, 0x40000000
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    mov esi, t_memop_huge
    call report
    mov eax, 2                       # set_gdt with a wild frame list
    mov ebx, 0x00005000
    mov ecx, 512
    int 0x82
    mov esi, t_gdt_wild
    call report
    mov eax, 2                       # set_gdt with too many entries
    mov ebx, reqs
    mov ecx, 8193
    int 0x82
    mov esi, t_gdt_huge
    call report
    mov eax, 10                      # update_descriptor at a misaligned address
    mov ebx, 0x00000004
    xor ecx, ecx
    xor edx, edx
    int 0x82
    mov esi, t_desc_misaligned
    call report
    mov eax, 10                      # ... and outside RAM
    mov ebx, 0xFFFFFFF8
    xor ecx, ecx
    xor edx, edx
    int 0x82
    mov esi, t_desc_outside
    call report
    ret

t_null: .asciz "mmu_null_list"
t_cross: .asciz "mmu_list_into_hv"
t_hv_list: .asciz "mmu_list_in_hv"
t_huge: .asciz "mmu_huge_count"
t_negative: .asciz "mmu_negative_count"
t_negative_done: .asciz "mmu_negative_done"
t_wild_count: .asciz "mmu_wild_success_ptr"
t_uvm_hv: .asciz "uvm_hv_page"
t_uvm_nopt: .asciz "uvm_no_l1"
t_memop_wild: .asciz "memop_wild_list"
t_memop_huge: .asciz "memop_huge_count"
t_gdt_wild: .asciz "set_gdt_wild_list"
t_gdt_huge: .asciz "set_gdt_huge"
t_desc_misaligned: .asciz "update_desc_misaligned"
t_desc_outside: .asciz "update_desc_outside_ram"
.align 4
done: .long 0
reqs: .long 3, 6                     # MMUEXT_TLB_FLUSH: harmless
.align 16
.space 4096
boot_stack_top:
