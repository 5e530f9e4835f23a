"""sched_op (xen/common/schedule.c do_sched_op): yield, block, shutdown."""
from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.xen import (SCHEDOP_block, SCHEDOP_cmdmask, SCHEDOP_reasonshift,
                            SCHEDOP_shutdown, SCHEDOP_yield)


def do_sched_op(hv: Hypervisor, op, *_):
    cmd = op & SCHEDOP_cmdmask
    vcpu = hv.current
    if cmd == SCHEDOP_yield:
        hv.yield_current()
        return 0
    if cmd == SCHEDOP_block:
        # Xen clears the upcall mask first so a block cannot sleep through an event
        # that was already pending (the wakeup-waiting race).
        vcpu.shared.vcpu_data[0].evtchn_upcall_mask = 0
        hv.block_current()
        return 0
    if cmd == SCHEDOP_shutdown:
        hv.shutdown_current((op >> SCHEDOP_reasonshift) & 0xFF)
        return 0
    return -errno.ENOSYS
