/*
 * head.S -- entry point of the C guest.
 *
 * Xen 2.0 start-of-day state: ring 1, CS = FLAT_RING1_CS, DS/ES/FS/GS/SS =
 * FLAT_RING1_DS (flat), paging on with the bootstrap page tables, ESP = top of
 * a one-page bootstrap stack (ours to replace), ESI = virtual address of
 * start_info_t, event upcalls masked.
 */

#include "xen.h"

/* The Xen-ELF note the domain builder looks for (non-allocated section). */
        .section __xen_guest
        .ascii  "GUEST_OS=linux,XEN_VER=2.0,VIRT_BASE=0xC0000000,LOADER=generic"
        .byte   0

        .section .text.head, "ax"
        .globl  _start
        .type   _start, @function
_start:
        cld
        movl    $stack_top, %esp        /* SS already FLAT_RING1_DS (flat) */
        xorl    %ebp, %ebp
        pushl   %esi                    /* start_info_t * */
        call    start_kernel
        /* start_kernel does not return; if it does, power off and idle. */
        movl    $__HYPERVISOR_sched_op, %eax
        movl    $(SCHEDOP_shutdown | (SHUTDOWN_poweroff << SCHEDOP_reasonshift)), %ebx
        int     $0x82
1:      movl    $__HYPERVISOR_sched_op, %eax
        movl    $SCHEDOP_yield, %ebx
        int     $0x82
        jmp     1b
        .size   _start, . - _start

        .section .bss
        .balign 16
stack_bottom:
        .skip   8192
stack_top:

        .section .note.GNU-stack, "", @progbits
