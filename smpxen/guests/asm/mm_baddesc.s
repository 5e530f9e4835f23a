# mm_baddesc (hostile): descriptor tables. A GDT frame holding a ring-0 code
# descriptor, or a descriptor whose base lies in the hypervisor's area, is refused
# by set_gdt and update_descriptor (-22). A good GDT is accepted, its frame can
# then no longer be mapped writable, and a selector from it loads and works.

guest_main:
    call first_free_pfn
    call pfn_to_mfn
    mov [gdt_mfn], eax
    # Map the (free, zeroed) frame writable and put a ring-0 descriptor at entry 2.
    mov eax, 0xC0300000
    mov edx, [gdt_mfn]
    shl edx, 12
    or edx, 0x27
    mov ecx, 2
    call uva
    mov dword ptr [0xC0300000 + 16], 0x0000FFFF
    mov dword ptr [0xC0300000 + 20], 0x00CF9A00     # DPL 0 code
    call bd_unmap
    call bd_set_gdt
    mov esi, t_ring0_gdt
    call report
    # Hypervisor-covering data segment (base 0xFC400000).
    call bd_map
    mov dword ptr [0xC0300000 + 16], 0x0000FFFF
    mov dword ptr [0xC0300000 + 20], 0xFCCFB240
    call bd_unmap
    call bd_set_gdt
    mov esi, t_hv_gdt
    call report
    # A good GDT: a ring-1 flat data segment at entry 2 (selector 0x11).
    call bd_map
    mov dword ptr [0xC0300000 + 16], 0x0000FFFF
    mov dword ptr [0xC0300000 + 20], 0x00CFB200
    call bd_unmap
    call bd_set_gdt
    mov esi, t_good_gdt
    call report
    mov eax, 0xC0300000              # the frame is a GDT page now: no writable mapping
    mov edx, [gdt_mfn]
    shl edx, 12
    or edx, 0x27
    mov ecx, 2
    call uva
    mov esi, t_gdt_rw
    call report
    mov ax, 0x11
    mov es, ax
    mov eax, dword ptr es:[start_info_ptr]
    cmp eax, [start_info_ptr]
    sete al
    movzx eax, al
    mov esi, t_selector
    call report
    mov ax, 0x0821
    mov es, ax
    # update_descriptor: ring 0 and hypervisor-covering refused, a good one taken.
    mov ebx, [gdt_mfn]
    shl ebx, 12
    add ebx, 24
    mov ecx, 0x0000FFFF
    mov edx, 0x00CF9200
    mov eax, 10
    int 0x82
    mov esi, t_ud_ring0
    call report
    mov ebx, [gdt_mfn]
    shl ebx, 12
    add ebx, 24
    mov ecx, 0x0000FFFF
    mov edx, 0xFCCFB240
    mov eax, 10
    int 0x82
    mov esi, t_ud_hv
    call report
    mov ebx, [gdt_mfn]
    shl ebx, 12
    add ebx, 24
    mov ecx, 0x0000FFFF
    mov edx, 0x00CFF200
    mov eax, 10
    int 0x82
    mov esi, t_ud_good
    call report
    mov ebx, [gdt_mfn]               # Xen's reserved entries of the live GDT
    shl ebx, 12
    add ebx, 259 * 8
    mov ecx, 0x0000FFFF
    mov edx, 0x00CFBA00
    mov eax, 10
    int 0x82
    mov esi, t_ud_reserved
    call report
    ret

bd_map:
    mov eax, 0xC0300000
    mov edx, [gdt_mfn]
    shl edx, 12
    or edx, 0x27
    mov ecx, 2
    jmp uva
bd_unmap:
    mov eax, 0xC0300000
    xor edx, edx
    mov ecx, 2
    jmp uva
bd_set_gdt:
    mov eax, 2
    mov ebx, gdt_list
    mov ecx, 512
    int 0x82
    ret

t_ring0_gdt: .asciz "set_gdt_ring0"
t_hv_gdt: .asciz "set_gdt_hypervisor"
t_good_gdt: .asciz "set_gdt_good"
t_gdt_rw: .asciz "gdt_frame_rw"
t_selector: .asciz "gdt_selector_works"
t_ud_ring0: .asciz "update_desc_ring0"
t_ud_hv: .asciz "update_desc_hypervisor"
t_ud_good: .asciz "update_desc_good"
t_ud_reserved: .asciz "update_desc_reserved"
.align 4
gdt_list:
gdt_mfn: .long 0
.align 16
.space 4096
boot_stack_top:
