"""Hypercall numbers (xen.h __HYPERVISOR_*), the trap vector and the argument
convention of Xen 2.0 on x86_32: EAX = number, EBX ECX EDX ESI EDI = arguments,
EAX = result."""
from enum import IntEnum

HYPERCALL_VECTOR = 0x82
NR_HYPERCALLS = 32          # entry.S masks EAX with NR_hypercalls-1


class Hypercall(IntEnum):
    set_trap_table = 0
    mmu_update = 1
    set_gdt = 2
    stack_switch = 3
    set_callbacks = 4
    fpu_taskswitch = 5
    sched_op = 6
    dom0_op = 7
    set_debugreg = 8
    get_debugreg = 9
    update_descriptor = 10
    set_fast_trap = 11
    dom_mem_op = 12
    multicall = 13
    update_va_mapping = 14
    set_timer_op = 15
    event_channel_op = 16
    xen_version = 17
    console_io = 18
    physdev_op = 19
    grant_table_op = 20
    vm_assist = 21
    update_va_mapping_otherdomain = 22


def name(number: int) -> str:
    try:
        return Hypercall(number).name
    except ValueError:
        return f"hypercall_{number}"
