"""Page references, page types and page-table validation: Xen 2.0's memory.c
rules over the shared frame table (reference/xen2-abi.md §3).

Every frame a domain uses is counted. count_info holds the general reference
count (every mapping, every table use, PGC_allocated while the owner has it);
type_info holds one type (L1/L2 page table, GDT/LDT page, writable) and a count
of the uses that need that type. A frame's type can change only when its type
count is zero, and a frame gains the L1, L2, GDT or LDT type only after its whole
contents passed validation, so:
  - a domain maps only frames it owns (get_page checks the owner),
  - a frame typed as a page table or descriptor page has no writable mapping
    (a writable mapping needs the writable type),
  - and every entry of a page table in use is one the hypervisor checked.

All public methods take Locks.mm (re-entrant), so a hypercall may hold it around a
whole batch. Nothing here waits for other PCPUs: TLB flushes that a type change
needs are handed to `request_flush(cpu)`, which the PCPU serves once the lock is
released (waiting for an IPI while holding the lock could deadlock two PCPUs).

Where smpxen is stricter than Xen 2.0 (each says why):
  - frames of the hypervisor region and Xen-owned frames are never mappable, not
    even by a privileged domain through DOMID_XEN (Xen lets Domain-0 map the M2P
    read-only that way; smpxen maps it into every guest itself);
  - no I/O memory is modelled, so a frame number outside RAM is always refused;
  - the flag-only fast path of mod_l1_entry/mod_l2_entry also refuses
    _PAGE_GLOBAL/_PAGE_PAT/_PAGE_PSE (Xen 2.0 checked them only when the frame
    changed; later Xen closed that gap);
  - hypervisor-shared frames (shared_info) can only ever be writable-typed."""
from __future__ import annotations

import struct

from smpxen.mm.descriptor import check_descriptor
from smpxen.mm.tlbflush import FlushClock, cpu_bit, mask_cpus
from smpxen.shm.frametable import (FF_XEN_HEAP, OWNER_NONE, OWNER_XEN, PGC_allocated,
                                   PGC_count_mask, PGT_count_mask, PGT_gdt_page,
                                   PGT_l1_page_table, PGT_l2_page_table, PGT_l4_page_table,
                                   PGT_ldt_page, PGT_pinned, PGT_type_mask, PGT_va_mask,
                                   PGT_va_mutable, PGT_va_shift, PGT_va_unknown, PGT_validated,
                                   PGT_writable_page)
from smpxen.shm.layout import PERDOMAIN_SLOT
from smpxen.xen import arch_x86_32 as A

_u32 = struct.Struct("<I")
_table = struct.Struct("<1024I")
_desc = struct.Struct("<II")

L1_DISALLOW = A._PAGE_GLOBAL | A._PAGE_PAT
L2_DISALLOW = A._PAGE_GLOBAL | A._PAGE_PSE
DOMAIN_SLOTS = A.DOMAIN_ENTRIES_PER_L2_PAGETABLE          # 1008
XEN_RO = A._PAGE_PRESENT | A._PAGE_ACCESSED
XEN_RW = XEN_RO | A._PAGE_RW | A._PAGE_DIRTY
GDT_PAGES = 16
LDT_FIRST = 16            # perdomain_pt entries 16..31: LDT shadow
LDT_PAGES = 16
_ldt_shadow = struct.Struct(f"<{LDT_PAGES}I")
DESCS_PER_PAGE = 512


class MM:
    def __init__(self, frametable, ram, domains):
        self.ft = frametable
        self.frames = frametable.frames
        self.mem = ram.mem
        self.layout = frametable.layout
        self.nr_frames = self.layout.nr_frames
        self.hv_frames = self.layout.hv_frames
        self.domains = domains
        self.lock = frametable.locks.mm
        self.clock = FlushClock(frametable)
        self.request_flush = self._note_flush
        self.pending_flush: set[int] = set()
        # Called with a domid whose LDT shadow was invalidated (Xen's DOP_RELOAD_LDT);
        # the PCPU running that domain may map page 0 again after the hypercall.
        self.request_ldt_reload = lambda d: None
        self._slots: dict[int, int] = {}
        idle = _table.unpack_from(self.mem, self.layout.idle_pd_mfn << 12)
        self._xen_l2 = {slot: idle[slot] for slot in range(DOMAIN_SLOTS, 1024) if idle[slot]}

    # ---- domains -------------------------------------------------------------------
    def dominfo(self, domid: int):
        """The shared record of a live domain, or None."""
        slots = self.domains.slots
        i = self._slots.get(domid)
        if i is not None and slots[i].state and slots[i].domid == domid:
            return slots[i]
        for i, d in enumerate(slots):
            if d.state and d.domid == domid:
                self._slots[domid] = i
                return d
        return None

    def xen_l2_entries(self, domid: int) -> dict[int, int]:
        """Slots 1008..1023 of every L2 of this domain: Xen's shared slots and the
        domain's PERDOMAIN L1."""
        out = dict(self._xen_l2)
        info = self.dominfo(domid)
        if info is not None and info.perdomain_pt_mfn:
            out[PERDOMAIN_SLOT] = (info.perdomain_pt_mfn << 12) | XEN_RW
        return out

    def _note_flush(self, cpu: int) -> None:
        self.pending_flush.add(cpu)

    # ---- memory words ----------------------------------------------------------------
    def read_entry(self, ma: int) -> int:
        return _u32.unpack_from(self.mem, ma)[0]

    def write_entry(self, ma: int, value: int) -> None:
        _u32.pack_into(self.mem, ma, value & 0xFFFFFFFF)

    def read_table(self, mfn: int) -> tuple:
        return _table.unpack_from(self.mem, mfn << 12)

    def is_ram(self, mfn: int) -> bool:
        return 0 <= mfn < self.nr_frames

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
        info = self.dominfo(owner) if owner not in (OWNER_XEN, OWNER_NONE) else None
        mask = 0
        if info is not None:
            if not xen_heap:
                info.tot_pages -= 1
            mask = cpu_bit(info.processor)
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
        info = self.dominfo(f.owner)
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

    # ---- page-table updates --------------------------------------------------------------
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

    # ---- reservations -------------------------------------------------------------------
    def alloc_domheap_pages(self, d: int, count: int):
        """Give `count` free frames to domain d within its max_pages. Returns
        (mfns, tlb_cpus, tb_cpus, may_cache): the PCPUs that may still cache one of
        these frames in their TLB or translated code per the flush clock, which must
        flush before the frames are used, and every PCPU the frames were last used
        on (what a hypervisor without the clock would flush); None if the domain is
        over its limit or the pool is short."""
        with self.lock:
            info = self.dominfo(d)
            if info is None or count < 0 or info.tot_pages + count > info.max_pages \
                    or self.ft.header.free_count < count:
                return None
            mfns = self.ft.alloc(d, count)
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

    def zap_mappings(self, d: int, mfn: int) -> int:
        """Remove every mapping of `mfn` from domain d's validated L1 tables (for a
        revocation); returns how many entries were cleared. Run only by the PCPU
        that owns d (DESIGN.md invariant 1: its page tables are guest-visible)."""
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

    def mapped_beyond_allocation(self, mfn: int) -> bool:
        """Does anything but PGC_allocated and a pin hold this frame?"""
        f = self.frames[mfn]
        held = (1 if f.count_info & PGC_allocated else 0) + (1 if f.type_info & PGT_pinned else 0)
        return f.count_info & PGC_count_mask > held

    # ---- descriptor tables ------------------------------------------------------------------
    def perdomain_entry_ma(self, d: int, index: int) -> int:
        return (self.dominfo(d).perdomain_pt_mfn << 12) + index * 4

    def gdt_frames(self, d: int) -> list[int]:
        info = self.dominfo(d)
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
        info = self.dominfo(d)
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
            info = self.dominfo(d)
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
            info = self.dominfo(d)
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

    # ---- audit -----------------------------------------------------------------------------
    def audit(self, d: int, baseptrs=(), held=None) -> list[str]:
        """Recount every reference of domain d's frames from its tables (Xen's
        audit_domain) and report each frame whose counts differ, and any rule a
        validated table breaks. `held` maps mfn -> (general, type) references the
        caller holds outside any table."""
        problems = []
        owned = [m for m in range(self.hv_frames, self.nr_frames) if self.frames[m].owner == d]
        exp_c = {m: 0 for m in owned}
        exp_t = {m: 0 for m in owned}

        def ref(m, typed, why):
            if m not in exp_c:
                problems.append(f"{why} references frame {m:#x} not owned by d{d}")
                return
            exp_c[m] += 1
            exp_t[m] += typed

        for m in owned:
            f = self.frames[m]
            exp_c[m] += 1 if f.count_info & PGC_allocated else 0
            if f.type_info & PGT_pinned:
                exp_c[m] += 1
                exp_t[m] += 1
        for m in owned:
            t = self.frames[m].type_info
            if not t & PGT_count_mask:
                continue
            kind = t & PGT_type_mask
            if kind in (PGT_l1_page_table, PGT_l2_page_table, PGT_gdt_page, PGT_ldt_page) \
                    and not t & PGT_validated:
                problems.append(f"frame {m:#x} typed {kind >> 29} in use but not validated")
            if kind == PGT_l1_page_table:
                for i, e in enumerate(self.read_table(m)):
                    if not e & A._PAGE_PRESENT:
                        continue
                    if e & L1_DISALLOW:
                        problems.append(f"L1 {m:#x}[{i}] has disallowed flags {e:#x}")
                    tgt = e >> 12
                    ref(tgt, 1 if e & A._PAGE_RW else 0, f"L1 {m:#x}[{i}]")
                    if e & A._PAGE_RW and tgt in exp_c and \
                            self.frames[tgt].type_info & PGT_type_mask != PGT_writable_page:
                        problems.append(f"L1 {m:#x}[{i}] maps non-writable-typed {tgt:#x} RW")
            elif kind == PGT_l2_page_table:
                for i, e in enumerate(self.read_table(m)[:DOMAIN_SLOTS]):
                    if not e & A._PAGE_PRESENT or e >> 12 == m:
                        continue
                    tgt = e >> 12
                    ref(tgt, 1, f"L2 {m:#x}[{i}]")
                    tk = self.frames[tgt].type_info & PGT_type_mask if self.is_ram(tgt) else None
                    if tk == PGT_l2_page_table and e & A._PAGE_RW:
                        problems.append(f"L2 {m:#x}[{i}] is a writable linear mapping")
                    elif tk not in (PGT_l1_page_table, PGT_l2_page_table):
                        problems.append(f"L2 {m:#x}[{i}] maps a frame that is no page table")
        for m in baseptrs:
            ref(m, 1, "base pointer")
        for m in self.gdt_frames(d):
            ref(m, 1, "GDT")
        for m in self.ldt_shadow_frames(d):
            ref(m, 1, "LDT shadow")
        for m, (c, t) in (held or {}).items():
            if m in exp_c:
                exp_c[m] += c
                exp_t[m] += t
        for m in owned:
            f = self.frames[m]
            if f.count_info & PGC_count_mask != exp_c[m]:
                problems.append(f"frame {m:#x}: count {f.count_info & PGC_count_mask} != {exp_c[m]}")
            if f.type_info & PGT_count_mask != exp_t[m]:
                problems.append(f"frame {m:#x}: type count {f.type_info & PGT_count_mask} != {exp_t[m]}")
        return problems
