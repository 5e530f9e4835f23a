"""dom_mem_op (xen/common/dom_mem_ops.c): increase and decrease a domain's
reservation. Frames really move between the free pool and the domain: increase
takes them from the pool within max_pages (after every PCPU that may still cache
one of them flushed), decrease unpins them and drops PGC_allocated so they return
to the pool with their last reference. Both return the number of extents done and
stop at the first that fails. Domain-0 may decrease another domain's reservation:
that revokes the frames even where the domain still maps them (see _decrease).
Long lists are preemptible, as in Xen 2.0.x: a continuation carries the extent to
start from in op's upper bits (START_EXTENT_SHIFT)."""
from __future__ import annotations

from smpxen.hv.iface import Hypervisor
from smpxen.hv.guestmem import GuestFault
from smpxen.hv.mmu import guest_range_ok
from smpxen.xen import errno
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.xen import (DOMID_SELF, MEMOP_decrease_reservation, MEMOP_increase_reservation,
                            START_EXTENT_SHIFT)

# Extents handled between two preemption checks (the frame-table lock is taken once
# per chunk to allocate, once per extent to free).
CHUNK = 32


def do_dom_mem_op(hv: Hypervisor, op, extent_list, nr_extents, extent_order, domid):
    start = op >> START_EXTENT_SHIFT
    cmd = op & ((1 << START_EXTENT_SHIFT) - 1)
    paging = hv.paging
    d = domid & 0xFFFF
    if d == DOMID_SELF:
        d = hv.current.domid
    elif not hv.current.privileged:
        return -errno.EPERM
    elif hv.domains.find(d) is None:
        return -errno.ESRCH
    if cmd == MEMOP_increase_reservation:
        step = _increase
    elif cmd == MEMOP_decrease_reservation:
        step = _decrease
    else:
        return -errno.ENOSYS
    if not guest_range_ok(extent_list, nr_extents * 4) or extent_order >= 32:
        return start
    i = start
    while i < nr_extents:
        if i > start and hv.preempt_pending():
            return hv.create_continuation(Hypercall.dom_mem_op, cmd | i << START_EXTENT_SHIFT, extent_list,
                                          nr_extents, extent_order, domid)
        n = min(CHUNK, nr_extents - i)
        got = step(hv, paging, d, extent_list, i, n, extent_order)
        i += got
        if got < n:
            break
    return i


def _increase(hv: Hypervisor, paging, d, extent_list, first, n, order) -> int:
    """Extents first .. first+n-1; returns how many were given."""
    if order != 0:
        return 0          # only physical-device domains may ask for larger extents
    # Xen allocates extent by extent; taking a chunk that fits under max_pages at once
    # gives the same result with one flush (one shootdown) for the chunk.
    mm = hv.mm
    info = hv.domains.find(d)
    n = max(0, min(n, info.max_pages - info.tot_pages, mm.free_frames()))
    mfns = paging.alloc_frames(d, n) or []
    for i, mfn in enumerate(mfns):
        mm.scrub_frame(mfn)
        try:
            hv.mem.write_u32(extent_list + 4 * (first + i), mfn)
        except GuestFault:
            for lost in mfns[i:]:          # the guest cannot name them: back to the pool
                mm.free_dom_page(lost, d)
            return i
    return len(mfns)


def _decrease(hv: Hypervisor, paging, d, extent_list, first, n, order) -> int:
    mm = hv.mm
    for i in range(n):
        try:
            mfn = hv.mem.read_u32(extent_list + 4 * (first + i))
        except GuestFault:
            return i
        for j in range(1 << order):
            if not mm.is_ram(mfn + j):
                return i
            if d != hv.current.domid:
                # Revocation (smpxen): Xen 2.0 would keep a frame the domain still
                # maps alive until it unmapped it; here the domain's PCPU removes
                # those mappings first, so the frame really leaves it.
                paging.revoke_mappings(d, mfn + j)
            if not mm.free_dom_page(mfn + j, d):
                return i
    return n
