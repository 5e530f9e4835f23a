"""Reservations (Xen 2.0 page_alloc.c and dom_mem_ops.c): frames moving between the
free pool and a domain, with the TLB-flush clock saying which PCPUs may still
cache a frame handed out again."""
from __future__ import annotations

from smpxen.mm.tlbflush import mask_cpus
from smpxen.shm.frametable import (FF_XEN_HEAP, PGC_allocated, PGC_count_mask, PGT_count_mask,
                                   PGT_l1_page_table, PGT_l2_page_table, PGT_pinned, PGT_type_mask)


class Reservations:
    """Mixin of MM (smpxen/mm/memory.py): a domain's allocation."""

    # ---- reservations -------------------------------------------------------------------
    def alloc_domheap_pages(self, d: int, count: int, flags: int = 0, owner: int | None = None):
        """Give `count` free frames to domain d within its max_pages. Returns
        (mfns, tlb_cpus, tb_cpus, may_cache): the PCPUs that may still cache one of
        these frames in their TLB or translated code per the flush clock, which must
        flush before the frames are used, and every PCPU the frames were last used
        on (what a hypervisor without the clock would flush); None if the domain is
        over its limit or the pool is short. With FF_XEN_HEAP in `flags` (a frame
        the hypervisor shares with d, its shared_info) or another `owner` (OWNER_XEN:
        d's per-domain page table) the frames do not count against d's pages."""
        with self.lock:
            info = self.domains.find(d)
            counted = owner is None and not flags & FF_XEN_HEAP
            if info is None or count < 0 or (counted and info.tot_pages + count > info.max_pages) \
                    or self.ft.header.free_count < count:
                return None
            mfns = self.ft.alloc(d if owner is None else owner, count, flags)
            if counted:
                info.tot_pages += count
            tlb, tb, may_cache = set(), set(), set()
            nr = self.layout.nr_pcpus
            for mfn in mfns:
                f = self.frames[mfn]
                if f.cpu_mask:
                    cpus = mask_cpus(f.cpu_mask, nr)
                    may_cache.update(cpus)
                    tlb.update(self.clock.cpus_needing_flush(cpus, f.tlbflush_timestamp))
                    tb.update(self.clock.cpus_needing_flush(cpus, f.tlbflush_timestamp, True))
                    f.cpu_mask = 0
            return mfns, tlb, tb, may_cache

    def free_dom_page(self, mfn: int, d: int) -> bool:
        """One frame of decrease_reservation: unpin, drop PGC_allocated; the frame
        goes back to the pool when its last reference goes. Refused while the frame
        is in use as a page table (beyond its own pin) or is hypervisor-shared."""
        with self.lock:
            if not self.get_page(mfn, d):
                return False
            f = self.frames[mfn]
            t = f.type_info
            in_use = (t & PGT_count_mask) - (1 if t & PGT_pinned else 0)
            if f.flags & FF_XEN_HEAP or \
                    (t & PGT_type_mask in (PGT_l1_page_table, PGT_l2_page_table) and in_use > 0):
                self.put_page(mfn)
                return False
            if t & PGT_pinned:
                f.type_info &= ~PGT_pinned
                self.put_page_and_type(mfn)
            if f.count_info & PGC_allocated:
                f.count_info &= ~PGC_allocated
                self.put_page(mfn)
            self.put_page(mfn)
            return True
    def mapped_beyond_allocation(self, mfn: int) -> bool:
        """Does anything but PGC_allocated and a pin hold this frame?"""
        f = self.frames[mfn]
        held = (1 if f.count_info & PGC_allocated else 0) + (1 if f.type_info & PGT_pinned else 0)
        return f.count_info & PGC_count_mask > held
