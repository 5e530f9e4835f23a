"""The hypercall table (Xen's hypercall_table in entry.S): every implemented
hypercall number and its handler, in one place. A number not here is -ENOSYS;
physdev_op and grant_table_op are not modelled yet (no PCI devices, no grant tables).

A handler takes the hypervisor interface of the PCPU running the caller
(smpxen/hv/iface.py) and the five argument registers, and returns EAX.
`do_hypercall` is the one dispatcher: the PCPU's interrupt hook and multicall use
it. A guest fault while a handler reads or writes guest memory becomes -EFAULT here,
once, for every handler."""
from __future__ import annotations

from typing import Callable

from smpxen.hv.iface import Hypervisor
from smpxen.hv import (console, descriptors, dom0_op, dom_mem, event_channel, mmu, multicall, sched_op,
                       timer, traps, version, vm_assist)
from smpxen.hv.guestmem import GuestFault
from smpxen.xen import errno
from smpxen.xen.hypercall import NR_HYPERCALLS, Hypercall

Handler = Callable[..., int]

HYPERCALLS: dict[int, Handler] = {
    Hypercall.set_trap_table: traps.do_set_trap_table,
    Hypercall.mmu_update: mmu.do_mmu_update,
    Hypercall.set_gdt: descriptors.do_set_gdt,
    Hypercall.stack_switch: traps.do_stack_switch,
    Hypercall.set_callbacks: traps.do_set_callbacks,
    Hypercall.fpu_taskswitch: traps.do_fpu_taskswitch,
    Hypercall.sched_op: sched_op.do_sched_op,
    Hypercall.dom0_op: dom0_op.do_dom0_op,
    Hypercall.set_debugreg: traps.do_set_debugreg,
    Hypercall.get_debugreg: traps.do_get_debugreg,
    Hypercall.update_descriptor: descriptors.do_update_descriptor,
    Hypercall.set_fast_trap: traps.do_set_fast_trap,
    Hypercall.dom_mem_op: dom_mem.do_dom_mem_op,
    Hypercall.multicall: multicall.do_multicall,
    Hypercall.update_va_mapping: mmu.do_update_va_mapping,
    Hypercall.set_timer_op: timer.do_set_timer_op,
    Hypercall.event_channel_op: event_channel.do_event_channel_op,
    Hypercall.xen_version: version.do_xen_version,
    Hypercall.console_io: console.do_console_io,
    Hypercall.vm_assist: vm_assist.do_vm_assist,
    Hypercall.update_va_mapping_otherdomain: mmu.do_update_va_mapping_otherdomain,
}


def do_hypercall(hv: Hypervisor, number: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    handler = HYPERCALLS.get(number & (NR_HYPERCALLS - 1))   # entry.S masks, it does not range-check
    if handler is None:
        return -errno.ENOSYS
    try:
        return handler(hv, a1, a2, a3, a4, a5)
    except GuestFault:
        return -errno.EFAULT


def implemented() -> list[int]:
    return sorted(HYPERCALLS)
