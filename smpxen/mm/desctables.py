"""Descriptor tables (Xen 2.0 x86_32/mm.c): GDT frames given with set_gdt, single
descriptor updates, and the LDT shadow in the domain's PERDOMAIN area; every
descriptor passes check_descriptor (smpxen/mm/descriptor.py)."""
from __future__ import annotations

from smpxen.mm.constants import (DESCS_PER_PAGE, GDT_PAGES, LDT_FIRST, LDT_PAGES, XEN_RO, _desc,
                                 _ldt_shadow)
from smpxen.mm.descriptor import check_descriptor
from smpxen.shm.frametable import PGT_gdt_page, PGT_ldt_page, PGT_type_mask, PGT_writable_page
from smpxen.xen import arch_x86_32 as A


class DescriptorTables:
    """Mixin of MM (smpxen/mm/memory.py): GDT and LDT pages."""

    def alloc_segdesc_page(self, mfn: int) -> bool:
        base = mfn << 12
        checked = []
        for i in range(DESCS_PER_PAGE):
            ok = check_descriptor(*_desc.unpack_from(self.mem, base + i * 8))
            if ok is None:
                return False
            checked.append(ok)
        for i, (lo, hi) in enumerate(checked):   # truncated limits, accessed bits
            _desc.pack_into(self.mem, base + i * 8, lo, hi)
        return True
    # ---- descriptor tables ------------------------------------------------------------------
    def perdomain_entry_ma(self, d: int, index: int) -> int:
        return (self.domains.find(d).perdomain_pt_mfn << 12) + index * 4

    def gdt_frames(self, d: int) -> list[int]:
        info = self.domains.find(d)
        if info is None or not info.perdomain_pt_mfn:
            return []
        pt = self.read_table(info.perdomain_pt_mfn)
        return [e >> 12 for e in pt[:GDT_PAGES] if e & A._PAGE_PRESENT]

    def set_gdt(self, d: int, frames: list[int], entries: int) -> bool:
        """set_gdt (x86_32/mm.c): type every frame gdt (validated), copy Xen's
        reserved entries into frame 0, install the frames read-only in the domain's
        PERDOMAIN L1 and drop the old ones."""
        lo, hi = A.FIRST_RESERVED_GDT_ENTRY * 8, (A.LAST_RESERVED_GDT_ENTRY + 1) * 8
        with self.lock:
            taken = []
            ok = True
            for i, mfn in enumerate(frames):
                if not self.is_ram(mfn):
                    ok = False
                    break
                if self.get_page_and_type(mfn, d, PGT_gdt_page):
                    taken.append(mfn)
                    continue
                # Frame 0 holds Xen's reserved (ring-0) entries: zap and retry once.
                if i == 0 and self.get_page_and_type(mfn, d, PGT_writable_page):
                    self.mem[(mfn << 12) + lo:(mfn << 12) + hi] = bytes(hi - lo)
                    self.put_page_and_type(mfn)
                    if self.get_page_and_type(mfn, d, PGT_gdt_page):
                        taken.append(mfn)
                        continue
                ok = False
                break
            if not ok:
                for mfn in taken:
                    self.put_page_and_type(mfn)
                return False
            first, xen = frames[0] << 12, self.layout.gdt_mfn << 12
            self.mem[first + lo:first + hi] = self.mem[xen + lo:xen + hi]
            old = self.gdt_frames(d)
            for i in range(GDT_PAGES):
                e = (frames[i] << 12) | XEN_RO if i < len(frames) else 0
                self.write_entry(self.perdomain_entry_ma(d, i), e)
            for mfn in old:
                self.put_page_and_type(mfn)
            return True

    # LDT shadow: Xen 2.0 maps a domain's LDT pages lazily, one page at a time, into
    # perdomain_pt[16..31] (LDT_VIRT_START) when the CPU first faults on them. Each
    # mapped page holds a general reference and an LDT type reference (so it was
    # validated by check_descriptor and has no writable mapping anywhere while it is
    # mapped); all of them are dropped together by invalidate_shadow_ldt.
    def ldt_shadow_frames(self, d: int) -> list[int]:
        info = self.domains.find(d)
        if info is None or not info.perdomain_pt_mfn:
            return []
        ents = _ldt_shadow.unpack_from(self.mem, (info.perdomain_pt_mfn << 12) + LDT_FIRST * 4)
        return [e >> 12 for e in ents if e & A._PAGE_PRESENT]

    def map_ldt_shadow_page(self, d: int, off: int, l1e: int) -> bool:
        """map_ldt_shadow_page (memory.c): page `off` of d's LDT, which d's page
        tables map with entry l1e, is typed PGT_ldt_page and mapped read-only in the
        shadow. False (the guest gets the page fault) if l1e is not present or the
        frame cannot be an LDT page (not d's, mapped writable, in use as another
        type, or a descriptor fails check_descriptor)."""
        mfn = l1e >> 12
        if not l1e & A._PAGE_PRESENT or not self.is_ram(mfn) or not 0 <= off < LDT_PAGES:
            return False
        with self.lock:
            info = self.domains.find(d)
            if info is None or not info.perdomain_pt_mfn:
                return False
            ma = self.perdomain_entry_ma(d, LDT_FIRST + off)
            old = self.read_entry(ma)
            if old & A._PAGE_PRESENT and old >> 12 == mfn:
                return True                   # already mapped: nothing to take
            if not self.get_page_and_type(mfn, d, PGT_ldt_page):
                return False
            self.write_entry(ma, (mfn << 12) | XEN_RO)
            if old & A._PAGE_PRESENT:
                self.put_page_and_type(old >> 12)
            return True

    def invalidate_shadow_ldt(self, d: int) -> bool:
        """__invalidate_shadow_ldt (memory.c): unmap every page of d's LDT shadow and
        drop its references. The PCPU running d must flush its TLB before d runs
        again (requested here). True if anything was mapped."""
        with self.lock:
            info = self.domains.find(d)
            if info is None or not info.perdomain_pt_mfn:
                return False
            base = (info.perdomain_pt_mfn << 12) + LDT_FIRST * 4
            ents = _ldt_shadow.unpack_from(self.mem, base)
            if not any(e & A._PAGE_PRESENT for e in ents):
                return False
            for i, e in enumerate(ents):
                if e & A._PAGE_PRESENT:
                    self.write_entry(base + i * 4, 0)
                    self.put_page_and_type(e >> 12)
            self.request_flush(info.processor)
            self.request_ldt_reload(d)
            return True

    def update_descriptor(self, d: int, pa: int, lo: int, hi: int) -> bool:
        mfn = pa >> 12
        if pa & 7 or not self.is_ram(mfn):
            return False
        desc = check_descriptor(lo, hi)
        if desc is None:
            return False
        with self.lock:
            if not self.get_page(mfn, d):
                return False
            try:
                kind = self.frames[mfn].type_info & PGT_type_mask
                if kind == PGT_gdt_page:
                    gdt = self.gdt_frames(d)
                    idx = (pa & 0xFFF) >> 3
                    if gdt and gdt[0] == mfn and \
                            A.FIRST_RESERVED_GDT_ENTRY <= idx <= A.LAST_RESERVED_GDT_ENTRY:
                        return False
                    want = PGT_gdt_page
                elif kind == PGT_ldt_page:
                    want = PGT_ldt_page
                else:
                    want = PGT_writable_page
                if not self.get_page_type(mfn, want):
                    return False
                _desc.pack_into(self.mem, pa, *desc)
                self.put_page_type(mfn)
                return True
            finally:
                self.put_page(mfn)
