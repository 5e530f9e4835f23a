"""Page tables (Xen 2.0 memory.c): validating L1 and L2 tables and the frames their
entries name, guest updates of single entries (mod_l1_entry/mod_l2_entry,
MMU_NORMAL_PT_UPDATE), pinning, and zapping a frame's mappings for a revocation."""
from __future__ import annotations

from smpxen.mm.constants import DOMAIN_SLOTS, L1_DISALLOW, L2_DISALLOW
from smpxen.shm.frametable import (OWNER_XEN, PGT_count_mask, PGT_gdt_page, PGT_l1_page_table,
                                   PGT_l2_page_table, PGT_ldt_page, PGT_pinned, PGT_type_mask,
                                   PGT_va_mask, PGT_va_mutable, PGT_va_shift, PGT_validated,
                                   PGT_writable_page)
from smpxen.xen import arch_x86_32 as A


class PageTables:
    """Mixin of MM (smpxen/mm/memory.py): the page-table rules."""

    # ---- validation --------------------------------------------------------------------
    def alloc_page_type(self, mfn: int, type_: int) -> bool:
        if type_ == PGT_l1_page_table:
            return self.alloc_l1_table(mfn)
        if type_ == PGT_l2_page_table:
            return self.alloc_l2_table(mfn)
        if type_ in (PGT_gdt_page, PGT_ldt_page):
            return self.alloc_segdesc_page(mfn)
        return False                       # L3/L4 do not exist on x86_32

    def free_page_type(self, mfn: int, type_: int) -> None:
        if type_ == PGT_l1_page_table:
            d = self.frames[mfn].owner
            for e in self.read_table(mfn):
                self.put_page_from_l1e(e, d)
        elif type_ == PGT_l2_page_table:
            for e in self.read_table(mfn)[:DOMAIN_SLOTS]:
                self.put_page_from_l2e(e, mfn)

    def get_page_from_l1e(self, l1e: int, d: int) -> bool:
        if not l1e & A._PAGE_PRESENT:
            return True
        if l1e & L1_DISALLOW:
            return False
        mfn = l1e >> 12
        if not self.is_ram(mfn) or mfn < self.hv_frames or self.frames[mfn].owner == OWNER_XEN:
            return False
        if l1e & A._PAGE_RW:
            return self.get_page_and_type(mfn, d, PGT_writable_page)
        return self.get_page(mfn, d)

    def put_page_from_l1e(self, l1e: int, _d: int) -> None:
        mfn = l1e >> 12
        if not l1e & A._PAGE_PRESENT or not self.is_ram(mfn):
            return
        if l1e & A._PAGE_RW:
            self.put_page_and_type(mfn)
        else:
            # A read-only mapping of a frame in use as an LDT page goes: the shadow
            # must not outlive the guest's own mapping. Rare, so (as Xen) the owner's
            # whole LDT shadow is dropped and faults back in lazily.
            t = self.frames[mfn].type_info
            if t & PGT_type_mask == PGT_ldt_page and t & PGT_count_mask:
                self.invalidate_shadow_ldt(self.frames[mfn].owner)
            self.put_page(mfn)

    def get_page_from_l2e(self, l2e: int, pfn: int, d: int, va_idx: int) -> bool:
        """pfn is the L2 frame holding the entry (slot va_idx)."""
        if not l2e & A._PAGE_PRESENT:
            return True
        if l2e & L2_DISALLOW:
            return False
        mfn = l2e >> 12
        if self.get_page_and_type(mfn, d, PGT_l1_page_table | (va_idx << PGT_va_shift)):
            return True
        return self._get_linear_pagetable(l2e, pfn, d)

    def _get_linear_pagetable(self, l2e: int, pfn: int, d: int) -> bool:
        """An L2 mapping an L2 (linear page table): read-only only, and only an
        already-validated L2; an L2 mapping itself takes no reference."""
        if l2e & A._PAGE_RW:
            return False
        mfn = l2e >> 12
        if mfn == pfn:
            return True
        if not self.get_page(mfn, d):
            return False
        f = self.frames[mfn]
        x = f.type_info
        if x & PGT_count_mask == PGT_count_mask or \
                x & (PGT_type_mask | PGT_validated) != PGT_l2_page_table | PGT_validated:
            self.put_page(mfn)
            return False
        f.type_info = x + 1
        return True

    def put_page_from_l2e(self, l2e: int, pfn: int) -> None:
        if l2e & A._PAGE_PRESENT and l2e >> 12 != pfn and self.is_ram(l2e >> 12):
            self.put_page_and_type(l2e >> 12)

    def alloc_l1_table(self, mfn: int) -> bool:
        d = self.frames[mfn].owner
        entries = self.read_table(mfn)
        for i, e in enumerate(entries):
            if not self.get_page_from_l1e(e, d):
                for old in entries[:i]:
                    self.put_page_from_l1e(old, d)
                return False
        return True

    def alloc_l2_table(self, mfn: int) -> bool:
        d = self.frames[mfn].owner
        entries = self.read_table(mfn)
        for i in range(DOMAIN_SLOTS):
            if not self.get_page_from_l2e(entries[i], mfn, d, i):
                for j in range(i):
                    self.put_page_from_l2e(entries[j], mfn)
                return False
        base = mfn << 12
        xen = self.xen_l2_entries(d)
        for slot in range(DOMAIN_SLOTS, 1024):
            self.write_entry(base + slot * 4, xen.get(slot, 0))
        return True
    # ---- page-table updates --------------------------------------------------------------
    def is_l1_of(self, mfn: int, d: int) -> bool:
        """Is mfn an L1 table of domain d in use (linear_pg_table's target)?"""
        t = self.frames[mfn].type_info
        return self.frames[mfn].owner == d and t & PGT_type_mask == PGT_l1_page_table \
            and bool(t & PGT_count_mask)

    def mod_l1_entry(self, pl1e: int, nl1e: int, d: int, fd: int) -> bool:
        """Write L1 entry at machine address pl1e for domain d; the new frame must
        belong to fd (FOREIGNDOM: d itself unless a foreign domain was selected)."""
        with self.lock:
            ol1e = self.read_entry(pl1e)
            if nl1e & A._PAGE_PRESENT:
                if nl1e & L1_DISALLOW:
                    return False
                if (ol1e ^ nl1e) & ~0xFFC == 0:      # same frame, RW and presence
                    self.write_entry(pl1e, nl1e)
                    return True
                if not self.get_page_from_l1e(nl1e, fd):
                    return False
            self.write_entry(pl1e, nl1e)
            self.put_page_from_l1e(ol1e, d)
            return True

    def mod_l2_entry(self, pl2e: int, nl2e: int, pfn: int, d: int) -> bool:
        with self.lock:
            slot = (pl2e & 0xFFF) >> 2
            if slot >= DOMAIN_SLOTS:
                return False                       # Xen's own slots
            ol2e = self.read_entry(pl2e)
            if nl2e & A._PAGE_PRESENT:
                if nl2e & L2_DISALLOW:
                    return False
                if (ol2e ^ nl2e) & ~0xFFE == 0:
                    self.write_entry(pl2e, nl2e)
                    return True
                if not self.get_page_from_l2e(nl2e, pfn, d, slot):
                    return False
            self.write_entry(pl2e, nl2e)
            self.put_page_from_l2e(ol2e, pfn)
            return True

    def update_entry(self, ptr: int, val: int, d: int, fd: int) -> bool:
        """MMU_NORMAL_PT_UPDATE: the frame holding the entry must be d's; dispatch on
        its current type; other frames need the writable type (a raw write)."""
        mfn = ptr >> 12
        with self.lock:
            if not self.get_page(mfn, d):
                return False
            try:
                t = self.frames[mfn].type_info
                kind = t & PGT_type_mask
                if kind == PGT_l1_page_table:
                    want = t & (PGT_type_mask | PGT_va_mask)
                    if not self.get_page_type(mfn, want):
                        return False
                    try:
                        return self.mod_l1_entry(ptr, val, d, fd)
                    finally:
                        self.put_page_type(mfn)
                if kind == PGT_l2_page_table:
                    if not self.get_page_type(mfn, PGT_l2_page_table):
                        return False
                    try:
                        return self.mod_l2_entry(ptr, val, mfn, d)
                    finally:
                        self.put_page_type(mfn)
                if not self.get_page_type(mfn, PGT_writable_page):
                    return False
                self.write_entry(ptr, val)
                self.put_page_type(mfn)
                return True
            finally:
                self.put_page(mfn)

    # ---- pinning ----------------------------------------------------------------------
    def pin_table(self, mfn: int, type_: int, fd: int) -> bool:
        """MMUEXT_PIN_L1/L2_TABLE. An L1 must be pinned before any other use (its
        back pointer must still be mutable)."""
        if type_ == PGT_l1_page_table:
            type_ |= PGT_va_mutable
        with self.lock:
            if not self.get_page_and_type(mfn, fd, type_):
                return False
            f = self.frames[mfn]
            if f.type_info & PGT_pinned:
                self.put_page_and_type(mfn)
                return False
            f.type_info |= PGT_pinned
            return True

    def unpin_table(self, mfn: int, fd: int) -> bool:
        with self.lock:
            if not self.get_page(mfn, fd):
                return False
            f = self.frames[mfn]
            if not f.type_info & PGT_pinned:
                self.put_page(mfn)
                return False
            f.type_info &= ~PGT_pinned
            self.put_page_and_type(mfn)
            self.put_page(mfn)
            return True
    def zap_mappings(self, d: int, mfn: int) -> int:
        """Remove every mapping of `mfn` from domain d's validated L1 tables (for a
        revocation); returns how many entries were cleared. Run only by the PCPU
        that owns d: its page tables are guest-visible (docs/design.md, invariant 1)."""
        n = 0
        with self.lock:
            for m in range(self.hv_frames, self.nr_frames):
                f = self.frames[m]
                if f.owner != d or f.type_info & PGT_type_mask != PGT_l1_page_table or \
                        f.type_info & (PGT_validated | PGT_count_mask) <= PGT_validated:
                    continue
                for i, e in enumerate(self.read_table(m)):
                    if e & A._PAGE_PRESENT and e >> 12 == mfn:
                        self.write_entry((m << 12) + i * 4, 0)
                        self.put_page_from_l1e(e, d)
                        n += 1
        return n
