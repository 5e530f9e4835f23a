"""The hypercall table (entry.S hypercall_table): number -> handler. Handlers
take the per-PCPU hypervisor services object and the five argument registers
(EBX, ECX, EDX, ESI, EDI) and return the value for EAX. A guest fault while a
handler touches guest memory becomes -EFAULT here, once, for every handler."""
from __future__ import annotations

from typing import Callable

from smpxen.hv.guestmem import GuestFault
from smpxen.xen import errno
from smpxen.xen.hypercall import NR_HYPERCALLS

Handler = Callable[..., int]
_TABLE: list[Handler | None] = [None] * NR_HYPERCALLS


def hypercall(number: int):
    """Register a handler for a hypercall number."""
    def register(fn: Handler) -> Handler:
        assert _TABLE[number] is None, f"hypercall {number} registered twice"
        _TABLE[number] = fn
        return fn
    return register


def do_hypercall(hv, number: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    handler = _TABLE[number & (NR_HYPERCALLS - 1)]   # entry.S masks, it does not range-check
    if handler is None:
        return -errno.ENOSYS
    try:
        return handler(hv, a1, a2, a3, a4, a5)
    except GuestFault:
        return -errno.EFAULT


def implemented() -> list[int]:
    _load_handlers()
    return [n for n, h in enumerate(_TABLE) if h is not None]


def _load_handlers() -> None:
    # Importing a handler module registers its hypercalls.
    from smpxen.hv import console, multicall, sched_op, timer, version, vm_assist  # noqa: F401
    from smpxen.hv import descriptors, dom_mem, mmu  # noqa: F401
    from smpxen.hv import event_channel, traps  # noqa: F401
    from smpxen.hv import dom0_op  # noqa: F401


_load_handlers()
