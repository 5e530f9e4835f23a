"""Reference counts and page types (Xen 2.0 memory.c get_page/put_page,
get_page_type/put_page_type): the general count of every use of a frame and the
count of the uses that need its one type; a type changes only at type count zero,
and a frame becomes a page table or descriptor page only once its contents are
validated (alloc_page_type, by the modules that know each type)."""
from __future__ import annotations

from smpxen.mm.tlbflush import cpu_bit
from smpxen.shm.frametable import (FF_XEN_HEAP, OWNER_NONE, OWNER_XEN, PGC_count_mask,
                                   PGT_count_mask, PGT_l4_page_table, PGT_pinned, PGT_type_mask,
                                   PGT_va_mask, PGT_va_mutable, PGT_va_unknown, PGT_validated,
                                   PGT_writable_page)


class RefCounts:
    """Mixin of MM (smpxen/mm/memory.py): counting over the shared frame table."""

    # ---- general references (get_page / put_page) -------------------------------------
    def get_page(self, mfn: int, d: int) -> bool:
        if not self.is_ram(mfn):
            return False
        with self.lock:
            f = self.frames[mfn]
            c = f.count_info & PGC_count_mask
            if c == 0 or c == PGC_count_mask or f.owner != d:
                return False
            f.count_info += 1
            return True

    def put_page(self, mfn: int) -> None:
        with self.lock:
            f = self.frames[mfn]
            assert f.count_info & PGC_count_mask, f"put_page of free frame {mfn:#x}"
            f.count_info -= 1
            if f.count_info & PGC_count_mask == 0:
                self._free_domheap_page(mfn)

    def _free_domheap_page(self, mfn: int) -> None:
        """The last reference went: the frame returns to the free pool, stamped so
        it is not reused before every PCPU that may cache it has flushed."""
        f = self.frames[mfn]
        owner, xen_heap = f.owner, f.flags & FF_XEN_HEAP
        info = self.domains.find(owner) if owner not in (OWNER_XEN, OWNER_NONE) else None
        mask = 0
        if info is not None:
            if not xen_heap:
                info.tot_pages -= 1
            # Its PCPU may hold it in its TLB; every PCPU it ran on, translated code
            # (a domain that moved leaves its code's translations behind).
            mask = cpu_bit(info.processor) | info.ran_mask
        self.ft.free([mfn])
        f.tlbflush_timestamp = self.clock.now()
        f.cpu_mask = mask

    # ---- types (get_page_type / put_page_type) ----------------------------------------
    def get_page_type(self, mfn: int, type_: int) -> bool:
        with self.lock:
            f = self.frames[mfn]
            x = f.type_info
            nx = x + 1
            if nx & PGT_count_mask == 0:
                return False                                   # type count overflow
            if x & PGT_count_mask == 0:
                if x & (PGT_type_mask | PGT_va_mask) != type_:
                    if type_ & PGT_type_mask != PGT_writable_page and f.flags & FF_XEN_HEAP:
                        return False
                    self._flush_before_type_change(f)
                    nx &= ~(PGT_type_mask | PGT_va_mask | PGT_validated)
                    nx |= type_
                    if type_ == PGT_writable_page:
                        nx |= PGT_validated
            elif x & (PGT_type_mask | PGT_va_mask) != type_:
                if x & PGT_type_mask != type_ & PGT_type_mask:
                    return False                               # in use as another type
                if x & PGT_va_mask == PGT_va_mutable:
                    nx = (nx & ~PGT_va_mask) | type_
                elif x & PGT_va_mask != type_ & PGT_va_mask:
                    nx = (nx & ~PGT_va_mask) | PGT_va_unknown
            elif not x & PGT_validated:
                # Xen waits for the CPU validating it; under Locks.mm nobody is.
                raise AssertionError(f"frame {mfn:#x} typed but not validated: {x:#x}")
            f.type_info = nx
            if not nx & PGT_validated:
                if not self.alloc_page_type(mfn, type_ & PGT_type_mask):
                    f.type_info = 0      # we held the only type reference
                    return False
                f.type_info |= PGT_validated
            return True

    def _flush_before_type_change(self, f) -> None:
        """A stale TLB entry on the owner's CPU must not outlive the old type."""
        info = self.domains.find(f.owner)
        if info is None:
            return
        cpu = info.processor
        if self.clock.cpus_needing_flush([cpu], f.tlbflush_timestamp):
            self.request_flush(cpu)

    def put_page_type(self, mfn: int) -> None:
        with self.lock:
            f = self.frames[mfn]
            x = f.type_info
            assert x & PGT_count_mask, f"put_page_type of untyped-count frame {mfn:#x}"
            nx = x - 1
            if nx & PGT_count_mask == 0:
                f.tlbflush_timestamp = self.clock.now()
                if (nx & PGT_type_mask) <= PGT_l4_page_table and nx & PGT_validated:
                    # Page-table pages are unvalidated at type count zero; clearing
                    # the bit first makes concurrent users fail rather than see a
                    # half-freed table.
                    f.type_info = x & ~PGT_validated
                    self.free_page_type(mfn, x & PGT_type_mask)
                    nx &= ~PGT_validated
            elif nx & (PGT_pinned | PGT_count_mask) == PGT_pinned | 1:
                nx |= PGT_va_mutable        # only the pin is left: back pointer mutable again
            f.type_info = nx

    def get_page_and_type(self, mfn: int, d: int, type_: int) -> bool:
        with self.lock:
            if not self.get_page(mfn, d):
                return False
            if not self.get_page_type(mfn, type_):
                self.put_page(mfn)
                return False
            return True

    def put_page_and_type(self, mfn: int) -> None:
        with self.lock:
            self.put_page_type(mfn)
            self.put_page(mfn)
