# mm_foreign (hostile): tries to map every machine frame from 0 to the first
# number on the command line read-only at a scratch page, and counts the mappings
# that succeeded for frames it does not own (its own frames are those whose M2P
# entry points back to them through its mfn_list, and its shared_info frame).
# Expected: foreign_mapped=0.

.equ SCRATCH, 0xC0300000

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov [limit], eax
    xor edi, edi
fm_loop:
    mov eax, 0xC0300000
    mov edx, edi
    shl edx, 12
    or edx, 0x25                    # present, user, accessed: read-only
    xor ecx, ecx
    call uva
    test eax, eax
    jnz fm_next
    inc dword ptr [mapped]
    call fm_is_own
    test eax, eax
    jnz fm_next
    inc dword ptr [foreign]
fm_next:
    inc edi
    cmp edi, [limit]
    jb fm_loop
    mov eax, 0xC0300000             # unmap the scratch page
    xor edx, edx
    mov ecx, 1
    call uva
    mov eax, [foreign]
    mov esi, t_foreign
    call report
    mov eax, [mapped]
    mov esi, t_mapped
    call report
    ret

# fm_is_own(EDI = mfn) -> EAX = 1 if mfn_list[M2P[mfn]] == mfn.
fm_is_own:
    push esi
    mov esi, [start_info_ptr]
    mov eax, [esi + 8]              # start_info.shared_info (machine address)
    shr eax, 12
    cmp eax, edi
    je fm_own
    mov eax, [0xFC000000 + edi * 4]
    cmp eax, [esi + START_INFO_NR_PAGES]
    jae fm_not_own
    mov esi, [esi + 40]
    cmp edi, [esi + eax * 4]
    jne fm_not_own
fm_own:
    mov eax, 1
    pop esi
    ret
fm_not_own:
    xor eax, eax
    pop esi
    ret

t_foreign: .asciz "foreign_mapped"
t_mapped: .asciz "mapped"
.align 4
limit: .long 0
mapped: .long 0
foreign: .long 0
.align 16
.space 4096
boot_stack_top:
