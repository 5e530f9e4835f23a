# mm_release_pt (hostile): gives back frames with decrease_reservation. Its live
# L2 and bootstrap L1 are refused (0 extents done); a free frame goes (1) and can
# be taken back with increase_reservation (1), which hands out a frame number.

guest_main:
    call pt_base_mfn
    mov [extent], eax
    call rp_decrease
    mov esi, t_l2
    call report
    mov esi, [start_info_ptr]
    mov esi, [esi + 24]
    mov eax, [esi + 768 * 4]
    shr eax, 12
    mov [extent], eax
    call rp_decrease
    mov esi, t_l1
    call report
    call first_free_pfn
    call pfn_to_mfn
    mov [extent], eax
    call rp_decrease
    mov esi, t_free
    call report
    call rp_decrease                 # the same frame again: no longer ours
    mov esi, t_again
    call report
    mov dword ptr [extent], 0
    mov eax, 12                      # increase_reservation by one frame
    mov ebx, 0
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    mov esi, t_increase
    call report
    cmp dword ptr [extent], 0
    setne al
    movzx eax, al
    mov esi, t_got_frame
    call report
    ret

rp_decrease:
    mov eax, 12
    mov ebx, 1
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    ret

t_l2: .asciz "release_l2"
t_l1: .asciz "release_l1"
t_free: .asciz "release_free"
t_again: .asciz "release_again"
t_increase: .asciz "increase_back"
t_got_frame: .asciz "got_frame"
.align 4
extent: .long 0
.align 16
.space 4096
boot_stack_top:
