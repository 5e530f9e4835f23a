"""Page references, page types and page-table validation: Xen 2.0's memory.c
rules over the shared frame table, summarised here.

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

from smpxen.mm.audit import Audit
from smpxen.mm.constants import DOMAIN_SLOTS, XEN_RW, _table, _u32
from smpxen.mm.desctables import DescriptorTables
from smpxen.mm.pagetable import PageTables
from smpxen.mm.refcount import RefCounts
from smpxen.mm.relinquish import Relinquish
from smpxen.mm.reservation import Reservations
from smpxen.mm.tlbflush import FlushClock
from smpxen.shm.layout import PERDOMAIN_SLOT


class MM(RefCounts, PageTables, DescriptorTables, Reservations, Relinquish, Audit):
    """Xen's memory rules over one machine's shared frame table, as seen by one
    process: the state here, each seam of the rules in its own module."""

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
        idle = _table.unpack_from(self.mem, self.layout.idle_pd_mfn << 12)
        self._xen_l2 = {slot: idle[slot] for slot in range(DOMAIN_SLOTS, 1024) if idle[slot]}

    # ---- domains -------------------------------------------------------------------
    def xen_l2_entries(self, domid: int) -> dict[int, int]:
        """Slots 1008..1023 of every L2 of this domain: Xen's shared slots and the
        domain's PERDOMAIN L1."""
        out = dict(self._xen_l2)
        info = self.domains.find(domid)
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

    def set_m2p(self, mfn: int, pfn: int) -> None:
        """MMU_MACHPHYS_UPDATE's store: the guests' read-only M2P maps these frames."""
        self.ft.m2p[mfn] = pfn

    def free_frames(self) -> int:
        return self.ft.header.free_count

    def scrub_frame(self, mfn: int) -> None:
        """Zero a frame handed to a domain (Xen 2.0 does not; smpxen does, so no
        domain reads what another left behind)."""
        self.ft.ram.zero_frame(mfn)

    def read_table(self, mfn: int) -> tuple:
        return _table.unpack_from(self.mem, mfn << 12)

    def is_ram(self, mfn: int) -> bool:
        return 0 <= mfn < self.nr_frames
