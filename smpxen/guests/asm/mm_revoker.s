# mm_revoker (Domain-0, shootdown test): revokes the first frame of the domain
# whose id is on the command line while that domain runs on another PCPU, then
# takes a frame from the pool (the same one comes back: the pool is LIFO) and
# writes a marker into it. The hypervisor must have removed the victim's mapping
# and flushed every PCPU that may cache it before handing the frame out.

guest_main:
    mov esi, [start_info_ptr]
    add esi, START_INFO_CMDLINE
    call parse_uint
    mov [victim], eax
    # Make room under max_pages: give back one free frame of our own.
    call first_free_pfn
    call pfn_to_mfn
    mov [extent], eax
    mov eax, 12
    mov ebx, 1
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    mov esi, t_room
    call report
    # Find the victim's lowest frame: decrease_reservation(victim) succeeds only on
    # frames it owns (its first kernel page comes first).
    xor ebx, ebx
    mov [extent], ebx
rv_scan:
    mov eax, 12
    mov ebx, 1
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    mov edi, [victim]
    int 0x82
    cmp eax, 1
    je rv_found
    inc dword ptr [extent]
    cmp dword ptr [extent], 0x100000
    jb rv_scan
    mov eax, 0
    mov esi, t_revoked
    call report
    ret
rv_found:
    mov eax, [extent]
    mov [revoked], eax
    mov eax, 1
    mov esi, t_revoked
    call report
    # Take a frame back: it is the revoked one.
    mov dword ptr [extent], 0
    mov eax, 12
    mov ebx, 0
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    mov edi, 0x7FF0
    int 0x82
    mov esi, t_increase
    call report
    mov eax, [extent]
    cmp eax, [revoked]
    sete al
    movzx eax, al
    mov esi, t_same
    call report
    # Write into it: a victim that could still read its old mapping would see this.
    mov eax, 0xC0300000
    mov edx, [extent]
    shl edx, 12
    or edx, 0x27
    mov ecx, 2
    call uva
    mov dword ptr [0xC0300000], 0xDEADBEEF
    mov eax, [0xC0300000]
    cmp eax, 0xDEADBEEF
    sete al
    movzx eax, al
    mov esi, t_written
    call report
    ret

t_room: .asciz "made_room"
t_revoked: .asciz "revoked"
t_increase: .asciz "increase"
t_same: .asciz "reused_same_frame"
t_written: .asciz "marker_written"
.align 4
victim: .long 0
extent: .long 0
revoked: .long 0
.align 16
.space 4096
boot_stack_top:
