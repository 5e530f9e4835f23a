"""Xen 2.0 domain flag bits (``struct domain.flags``, xen/include/xen/sched.h @2.0.0).

The numbers are kept identical to Xen 2.0 so the shared-memory domain table can
store one ``flags`` word whose bits mean exactly what they meant in Xen, and so
code translated from Xen (``test_bit(DF_BLOCKED, &d->flags)``) maps one-to-one.

Each ``DF_*`` constant is a *bit number*; ``DFM_*`` is the matching mask.
"""

from __future__ import annotations

DF_DONEFPUINIT = 0   # has the FPU been initialised for this domain?
DF_USEDFPU = 1       # has this domain used the FPU since last save?
DF_GUEST_STTS = 2    # has the guest OS requested 'stts'?
DF_CONSTRUCTED = 3   # has the guest OS been fully built yet?
DF_IDLETASK = 4      # is this one of the per-CPU idle domains?
DF_PRIVILEGED = 5    # is this domain privileged?
DF_PHYSDEV = 6       # may this domain do IO to physical devices?
DF_BLOCKED = 7       # domain is blocked waiting for an event
DF_CTRLPAUSE = 8     # domain is paused by the domain controller
DF_SHUTDOWN = 9      # domain is shut down (shutdown_code says why)
DF_CRASHED = 10      # domain crashed inside Xen, cannot continue
DF_DYING = 11        # death rattle
DF_RUNNING = 12      # currently running on a CPU
DF_CPUPINNED = 13    # disables auto-migration (DOM0_PINCPUDOMAIN)
DF_MIGRATED = 14     # domain migrated between CPUs: BVT resets avt to the new SVT

DFM_DONEFPUINIT = 1 << DF_DONEFPUINIT
DFM_USEDFPU = 1 << DF_USEDFPU
DFM_GUEST_STTS = 1 << DF_GUEST_STTS
DFM_CONSTRUCTED = 1 << DF_CONSTRUCTED
DFM_IDLETASK = 1 << DF_IDLETASK
DFM_PRIVILEGED = 1 << DF_PRIVILEGED
DFM_PHYSDEV = 1 << DF_PHYSDEV
DFM_BLOCKED = 1 << DF_BLOCKED
DFM_CTRLPAUSE = 1 << DF_CTRLPAUSE
DFM_SHUTDOWN = 1 << DF_SHUTDOWN
DFM_CRASHED = 1 << DF_CRASHED
DFM_DYING = 1 << DF_DYING
DFM_RUNNING = 1 << DF_RUNNING
DFM_CPUPINNED = 1 << DF_CPUPINNED
DFM_MIGRATED = 1 << DF_MIGRATED

#: Any of these bits makes a domain non-runnable (``domain_runnable()`` in
#: Xen 2.0 also requires ``pausecnt == 0``).
DFM_NOT_RUNNABLE = DFM_BLOCKED | DFM_CTRLPAUSE | DFM_SHUTDOWN | DFM_CRASHED

#: Bits the per-PCPU scheduler core owns and changes.  Whoever mirrors the
#: core's state into the shared domain table should merge with
#: ``(table & ~SCHED_OWNED_MASK) | (core_flags & SCHED_OWNED_MASK)`` so that
#: bits owned by other subsystems (FPU, CONSTRUCTED, PRIVILEGED, DYING, ...)
#: are not clobbered.
SCHED_OWNED_MASK = (DFM_BLOCKED | DFM_CTRLPAUSE | DFM_SHUTDOWN | DFM_CRASHED
                    | DFM_RUNNING | DFM_MIGRATED)

# The DOM0_GETDOMAININFO flag word is guest ABI: declared in smpxen.xen.dom0_ops.
from smpxen.xen.dom0_ops import (DOMFLAGS_BLOCKED, DOMFLAGS_CPUMASK,  # noqa: E402
                                 DOMFLAGS_CPUSHIFT, DOMFLAGS_CRASHED, DOMFLAGS_DYING,
                                 DOMFLAGS_PAUSED, DOMFLAGS_RUNNING, DOMFLAGS_SHUTDOWN,
                                 DOMFLAGS_SHUTDOWNMASK, DOMFLAGS_SHUTDOWNSHIFT)


def domain_runnable(flags: int, pausecnt: int) -> bool:
    """Xen 2.0 ``domain_runnable()``: not paused, blocked, shut down or crashed."""
    return pausecnt == 0 and not (flags & DFM_NOT_RUNNABLE)


def getdomaininfo_flags(flags: int, processor: int, shutdown_code: int = 0) -> int:
    """Build the DOM0_GETDOMAININFO ``flags`` word the way dom0_ops.c @2.0.0 does.

    Note that DOMFLAGS_PAUSED reflects only DF_CTRLPAUSE (the domain
    controller's pause), not the internal ``pausecnt``.
    """
    out = 0
    if flags & DFM_DYING:
        out |= DOMFLAGS_DYING
    if flags & DFM_CRASHED:
        out |= DOMFLAGS_CRASHED
    if flags & DFM_SHUTDOWN:
        out |= DOMFLAGS_SHUTDOWN
    if flags & DFM_CTRLPAUSE:
        out |= DOMFLAGS_PAUSED
    if flags & DFM_BLOCKED:
        out |= DOMFLAGS_BLOCKED
    if flags & DFM_RUNNING:
        out |= DOMFLAGS_RUNNING
    out |= (processor & DOMFLAGS_CPUMASK) << DOMFLAGS_CPUSHIFT
    out |= (shutdown_code & DOMFLAGS_SHUTDOWNMASK) << DOMFLAGS_SHUTDOWNSHIFT
    return out
