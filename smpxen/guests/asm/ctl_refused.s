# ctl_refused: what Domain-0's tools do to build and destroy domains, tried from an
# unprivileged domain: every dom0_op the control plane uses (-EPERM), selecting a
# foreign domain for mmu_update (only DOMID_IO is allowed: -EINVAL),
# update_va_mapping_otherdomain and dom_mem_op on another domain (-EPERM). Prints
# one "name=result" line for each, then "done=1". The union of dom0_op_t is at op + 8.

.equ HYPERVISOR_mmu_update, 1
.equ HYPERVISOR_dom0_op, 7
.equ HYPERVISOR_dom_mem_op, 12
.equ HYPERVISOR_update_va_mapping_otherdomain, 22
.equ DOM0_INTERFACE_VERSION, 0xAAAA0019

guest_main:
    mov esi, 0
ops_loop:
    mov eax, [op_cmds + esi * 4]
    test eax, eax
    jz ops_done
    mov [op], eax
    mov dword ptr [op + 4], DOM0_INTERFACE_VERSION
    mov dword ptr [op + 8], 0           # domain 0 (or memory_kb 0), pointers 0
    push esi
    mov eax, HYPERVISOR_dom0_op
    mov ebx, op
    int 0x82
    pop esi
    push esi
    mov esi, [op_names + esi * 4]
    call report
    pop esi
    inc esi
    jmp ops_loop
ops_done:
    # mmu_update: MMUEXT_SET_FOREIGNDOM(0) (MMU_EXTENDED_COMMAND, cmd 10 | dom << 16)
    mov dword ptr [mmu_req], 3
    mov dword ptr [mmu_req + 4], 10
    mov eax, HYPERVISOR_mmu_update
    mov ebx, mmu_req
    mov ecx, 1
    xor edx, edx
    int 0x82
    mov esi, t_foreigndom
    call report
    # update_va_mapping_otherdomain(page 0xC0000, 0, 0, domain 0)
    mov eax, HYPERVISOR_update_va_mapping_otherdomain
    mov ebx, 0xC0000
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    int 0x82
    mov esi, t_otherdomain
    call report
    # dom_mem_op(increase_reservation, extents, 1, 0, domain 0)
    mov eax, HYPERVISOR_dom_mem_op
    xor ebx, ebx
    mov ecx, mmu_req
    mov edx, 1
    xor esi, esi
    xor edi, edi
    int 0x82
    mov esi, t_dom_mem_op
    call report
    mov eax, 1
    mov esi, t_done
    call report
    ret

op_cmds:
    .long 8, 9, 13, 2, 12, 18, 29, 19, 27, 28, 30, 14, 15, 0
op_names:
    .long t_create, t_destroy, t_build, t_memlist, t_info, t_pfinfo, t_pfinfo2, t_readconsole
    .long t_initialmem, t_maxmem, t_vmassist, t_iopl, t_msr
t_create: .asciz "createdomain"
t_destroy: .asciz "destroydomain"
t_build: .asciz "builddomain"
t_memlist: .asciz "getmemlist"
t_info: .asciz "getdomaininfo"
t_pfinfo: .asciz "getpageframeinfo"
t_pfinfo2: .asciz "getpageframeinfo2"
t_readconsole: .asciz "readconsole"
t_initialmem: .asciz "setdomaininitialmem"
t_maxmem: .asciz "setdomainmaxmem"
t_vmassist: .asciz "setdomainvmassist"
t_iopl: .asciz "iopl"
t_msr: .asciz "msr"
t_foreigndom: .asciz "set_foreigndom"
t_otherdomain: .asciz "update_va_mapping_otherdomain"
t_dom_mem_op: .asciz "dom_mem_op_other"
t_done: .asciz "done"
.align 8
op: .space 80
mmu_req: .long 0, 0
.align 16
.space 4096
boot_stack_top:
