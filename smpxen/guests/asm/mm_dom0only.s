# mm_dom0only (hostile, run as an unprivileged domain): Domain-0-only memory
# operations. update_va_mapping_otherdomain -> -1 (-EPERM); selecting a foreign
# domain in mmu_update -> -22 (only DOMID_IO is open to it); dom_mem_op on
# another domain -> -1. Selecting DOMID_IO is allowed (0).

guest_main:
    mov eax, 22                      # update_va_mapping_otherdomain(page, 0, 0, dom 0)
    mov ebx, 0xC0300
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    int 0x82
    mov esi, t_uvmo
    call report
    xor eax, eax
    mov edx, 10                      # MMUEXT_SET_FOREIGNDOM, domain 0
    call mmu_ext
    mov esi, t_fd_dom0
    call report
    xor eax, eax
    mov edx, 0x7FF1000A              # MMUEXT_SET_FOREIGNDOM, DOMID_IO
    call mmu_ext
    mov esi, t_fd_io
    call report
    mov eax, 12                      # dom_mem_op(increase, list, 1, 0, domain 0)
    mov ebx, 0
    mov ecx, extent
    mov edx, 1
    xor esi, esi
    xor edi, edi
    int 0x82
    mov esi, t_memop_dom0
    call report
    ret

t_uvmo: .asciz "uvm_otherdomain"
t_fd_dom0: .asciz "foreigndom_dom0"
t_fd_io: .asciz "foreigndom_io"
t_memop_dom0: .asciz "dom_mem_op_dom0"
.align 4
extent: .long 0
.align 16
.space 4096
boot_stack_top:
