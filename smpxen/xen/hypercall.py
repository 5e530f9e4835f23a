"""Hypercall numbers (xen.h __HYPERVISOR_*) and the trap vector."""
HYPERCALL_VECTOR = 0x82
NR_HYPERCALLS = 32          # entry.S masks EAX with NR_hypercalls-1

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

NAMES = {v: k for k, v in dict(globals()).items()
         if not k.startswith(("_", "HYPERCALL_VECTOR", "NR_")) and isinstance(v, int)}


def name(number: int) -> str:
    return NAMES.get(number, f"hypercall_{number}")
