# mm_overlimit (hostile): asks for more memory than its limit. At start of day it
# holds max_pages frames, so increase_reservation grants 0 of 8; after giving 2
# back, 2 of 8. The granted frame numbers are written to the list.

guest_main:
    call mo_increase
    mov esi, t_at_limit
    call report
    call first_free_pfn
    mov ebx, eax
    call pfn_to_mfn
    mov [list], eax
    lea eax, [ebx + 1]
    call pfn_to_mfn
    mov [list + 4], eax
    mov eax, 12
    mov ebx, 1                       # decrease_reservation(list, 2)
    mov ecx, list
    mov edx, 2
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    mov esi, t_released
    call report
    call mo_increase
    mov esi, t_after
    call report
    ret

mo_increase:
    mov eax, 12
    mov ebx, 0
    mov ecx, list
    mov edx, 8
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    ret

t_at_limit: .asciz "increase_at_limit"
t_released: .asciz "released"
t_after: .asciz "increase_after_release"
.align 4
list: .long 0, 0, 0, 0, 0, 0, 0, 0
.align 16
.space 4096
boot_stack_top:
