"""A domain's memory going back (Xen 2.0 arch/x86/domain.c domain_relinquish_memory,
relinquish_list; x86_32/mm.c destroy_gdt): the base-pointer reference, the GDT and
LDT shadow, then every frame the domain owns loses its pin and its allocation
reference, and returns to the free pool with its last reference, stamped with the
TLB-flush clock so it is not handed out again before every PCPU that may cache it
has flushed (smpxen/mm/reservation.py)."""
from __future__ import annotations

import struct

from smpxen.mm.constants import GDT_PAGES
from smpxen.mm.tlbflush import cpu_bit
from smpxen.shm.frametable import (FF_XEN_HEAP, PGC_allocated, PGT_l2_page_table, PGT_pinned,
                                   PGT_type_mask, PGT_validated, FrameInfo)
from smpxen.xen import arch_x86_32 as A

_FRAME = 24                                      # sizeof(FrameInfo)
_OWNER = FrameInfo.owner.offset
assert _FRAME == struct.calcsize("<IIHHIII")


class Relinquish:
    """Mixin of MM (smpxen/mm/memory.py): taking a dying domain's memory back."""

    def domain_frames(self, d: int, xen_heap: bool = True) -> list[int]:
        """The frames domain d owns, in frame order (Xen's page_list; with xen_heap,
        its xenpage_list too). One pass over a copy of the owner column, so it costs
        little even for thousands of frames."""
        base = self.layout.frametable_mfn << 12
        raw = self.mem[base + _OWNER:base + self.nr_frames * _FRAME]
        lo, hi = raw[0::_FRAME], raw[1::_FRAME]
        want_lo, want_hi = d & 0xFF, d >> 8
        out = []
        i = lo.find(want_lo, self.hv_frames)
        while i >= 0:
            if hi[i] == want_hi and (xen_heap or not self.frames[i].flags & FF_XEN_HEAP):
                out.append(i)
            i = lo.find(want_lo, i + 1)
        return out

    def destroy_gdt(self, d: int) -> None:
        """destroy_gdt: unmap d's GDT frames from its PERDOMAIN table, dropping their
        GDT type references."""
        with self.lock:
            info = self.domains.find(d)
            if info is None or not info.perdomain_pt_mfn:
                return
            for i in range(GDT_PAGES):
                ma = self.perdomain_entry_ma(d, i)
                e = self.read_entry(ma)
                if e & A._PAGE_PRESENT:
                    self.write_entry(ma, 0)
                    self.put_page_and_type(e >> 12)

    def relinquish_memory(self, d: int, base_mfn: int) -> list[int]:
        """domain_relinquish_memory for d, whose base pointer (0: none) is base_mfn.
        Returns the frames of d still referenced afterwards: mapped by another domain
        (only a privileged one can map them), which must drop those mappings before
        the frames can go."""
        with self.lock:
            if base_mfn:
                self.put_page_and_type(base_mfn)
            self.destroy_gdt(d)
            self.invalidate_shadow_ldt(d)
            for mfn in self.domain_frames(d):
                if not self.get_page(mfn, d):
                    continue                      # its last reference is going already
                f = self.frames[mfn]
                if f.type_info & PGT_pinned:
                    f.type_info &= ~PGT_pinned
                    self.put_page_and_type(mfn)
                if f.count_info & PGC_allocated:
                    f.count_info &= ~PGC_allocated
                    self.put_page(mfn)
                # Break circular 'linear page table' references: the domain is dead,
                # so a validated L2 still in use can only be held by another L2 of it.
                x = f.type_info
                if x & (PGT_type_mask | PGT_validated) == PGT_l2_page_table | PGT_validated:
                    f.type_info = x & ~PGT_validated
                    self.free_page_type(mfn, PGT_l2_page_table)
                self.put_page(mfn)
            return self.domain_frames(d)

    def free_xen_frame(self, mfn: int, cpu: int) -> None:
        """A hypervisor frame of a dying domain (its PERDOMAIN table) returns to the
        pool, stamped as PCPU `cpu` may have walked through it."""
        with self.lock:
            self.ft.free([mfn])
            f = self.frames[mfn]
            f.tlbflush_timestamp = self.clock.now()
            f.cpu_mask = cpu_bit(cpu)
