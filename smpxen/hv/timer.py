"""set_timer_op (xen/common/schedule.c): a one-shot timer per domain at an absolute
system time; on expiry the domain's time is updated and VIRQ_TIMER raised.
Block-with-timeout is set_timer_op followed by SCHEDOP_block."""
from smpxen.hv.iface import Hypervisor


def do_set_timer_op(hv: Hypervisor, timeout_hi, timeout_lo, *_):
    hv.set_timer((timeout_hi << 32) | timeout_lo)
    return 0
