# mm_hvframe (hostile): tries every way to reach frames of the hypervisor region
# (frame 0 holds the machine header, frame 1 Xen's GDT): map them read-only and
# writable, write into them as page-table entries, pin them, make one a base
# pointer or a GDT frame. Every line must report -22 (-EINVAL).

guest_main:
    mov eax, 0xC0300000
    mov edx, 0x00000025             # frame 0, read-only
    xor ecx, ecx
    call uva
    mov esi, t_map_ro
    call report
    mov eax, 0xC0300000
    mov edx, 0x00001027             # frame 1, writable
    xor ecx, ecx
    call uva
    mov esi, t_map_rw
    call report
    mov eax, 0x00000040             # a "page-table update" inside frame 0
    mov edx, 0x12345678
    call mmu_one
    mov esi, t_write
    call report
    mov eax, 0x00001000
    mov edx, 0                      # MMUEXT_PIN_L1_TABLE on frame 1
    call mmu_ext
    mov esi, t_pin
    call report
    mov eax, 0x00000000
    mov edx, 5                      # MMUEXT_NEW_BASEPTR on frame 0
    call mmu_ext
    mov esi, t_baseptr
    call report
    mov eax, 0x00001002             # MMU_MACHPHYS_UPDATE of frame 1
    mov edx, 7
    call mmu_one
    mov esi, t_m2p
    call report
    mov eax, 2                      # set_gdt([1], 300)
    mov ebx, gdt_frames
    mov ecx, 300
    int 0x82
    mov esi, t_gdt
    call report
    ret

t_map_ro: .asciz "hv_map_ro"
t_map_rw: .asciz "hv_map_rw"
t_write: .asciz "hv_pt_write"
t_pin: .asciz "hv_pin"
t_baseptr: .asciz "hv_baseptr"
t_m2p: .asciz "hv_m2p"
t_gdt: .asciz "hv_gdt"
.align 4
gdt_frames: .long 1
.align 16
.space 4096
boot_stack_top:
