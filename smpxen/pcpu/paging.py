"""Paging on one PCPU: its side of memory management, what Xen keeps per CPU
(percpu_info's foreign domain and deferred ops, ptwr_info's two writable-page-table
slots, the LDT shadow of the domain it runs), the TLB and translation-cache flushes
of this core and of others (flush IPIs that wait for every acknowledgement, skipped
where the TLB-flush clock shows a PCPU already flushed), and the page-fault handler
that gets the first look at every #PF.

Hypercall handlers reach it as `hv.paging`. The frame-table logic itself is
smpxen.mm.memory (shared by all PCPUs under Locks.mm); nothing here waits for
another PCPU while holding that lock."""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from smpxen.arch import x86
from smpxen.mm.constants import LDT_FIRST
from smpxen.mm.memory import MM
from smpxen.pcpu import lifecycle
from smpxen.shm.frametable import (PGT_l1_page_table, PGT_type_mask, PGT_va_mask, PGT_va_shift,
                                   PGT_va_unknown)
from smpxen.shm.layout import GDT_VIRT_START, HV_GDT_VA, LDT_VIRT_START
from smpxen.xen import arch_x86_32 as A
from smpxen.xen.xen import DOMID_IO, DOMID_XEN, VMASST_TYPE_writable_pagetables
from smpxen.xen.trace import TRC_MM_PTWR_FLUSH, TRC_MM_SHOOTDOWN, TRC_MM_TLB_FLUSH

PTWR_PT_ACTIVE = 0
PTWR_PT_INACTIVE = 1
_u32 = struct.Struct("<I")
DEFAULT_GDT_LIMIT = (A.LAST_RESERVED_GDT_ENTRY + 1) * 8 - 1
P, RW, USER = A._PAGE_PRESENT, A._PAGE_RW, A._PAGE_USER
# load_LDT (asm-x86/ldt.h): the LDT descriptor Xen writes into GDT slot __LDT(cpu) =
# FIRST_RESERVED_GDT_ENTRY + 9 + 2*cpu and loads with lldt. smpxen writes LDTR's
# cache directly (no GDT slot needed); the selector is only what `sldt` shows, and
# Xen 2.0 had NR_CPUS 16, so PCPUs beyond 15 reuse those selectors.
LDT_DESC_HI = (LDT_VIRT_START & 0xFF000000) | 0x8200 | ((LDT_VIRT_START >> 16) & 0xFF)


def ldt_selector(cpu: int) -> int:
    return (A.FIRST_RESERVED_GDT_ENTRY + 9 + ((cpu % 16) << 1)) << 3


@dataclass
class PtwrSlot:
    """ptwr_info.ptinfo[which]: an L1 the guest may currently write directly."""
    l1va: int          # the guest address whose write faulted
    pte_ma: int        # machine address of the PTE mapping the L1 (now writable)
    l2e_ma: int        # machine address of the L2 entry hooking the L1 (ACTIVE only)
    l1_mfn: int
    snapshot: tuple    # the 1024 entries as they were validated


class Paging:
    def __init__(self, pcpu):
        self.pcpu = pcpu
        self.cpu = pcpu.index
        self.core = pcpu.core
        self.mm = MM(pcpu.frames, pcpu.ram, pcpu.domains)
        self.mm.request_flush = self._request_flush
        self.mm.request_ldt_reload = self._request_ldt_reload
        self.clock = self.mm.clock
        self.foreign: int | None = None        # percpu_info.foreign (a domid)
        self.deferred_flush = False            # DOP_FLUSH_TLB
        self.deferred_ldt = False              # DOP_RELOAD_LDT
        self.remote_flush: set[int] = set()
        self.ptwr: list[PtwrSlot | None] = [None, None]
        self.counts = {"tlb_flush_local": 0, "tlb_flush_ipis_sent": 0, "tlb_flush_ipis_avoided": 0,
                       "tlb_shootdowns": 0, "reuse_flush_checks": 0, "reuse_flush_ns": 0,
                       "revoke_ipis_sent": 0, "ptwr_faults": 0, "ptwr_flushes": 0,
                       "mmu_update_entries": 0, "ldt_shadow_maps": 0}
        # smpxen bench compares against a hypervisor without the flush clock: then
        # every PCPU that may cache a reused frame is flushed, whenever it last flushed.
        self.use_flush_clock = os.environ.get("SMPXEN_NO_FLUSH_CLOCK") != "1"

    # ---- who is acting -------------------------------------------------------------
    @property
    def current(self):
        return self.pcpu.current

    @property
    def domid(self) -> int:
        return self.pcpu.current.domid

    def foreigndom(self) -> int:
        """FOREIGNDOM: the selected foreign domain, else the caller."""
        return self.foreign if self.foreign is not None else self.domid

    def set_foreigndom(self, domid: int) -> bool:
        """MMUEXT_SET_FOREIGNDOM: an unprivileged domain may only select DOMID_IO;
        a privileged one any live domain, DOMID_XEN or DOMID_IO."""
        self.foreign = None
        if not self.current.privileged:
            if domid != DOMID_IO:
                return False
        elif domid not in (DOMID_IO, DOMID_XEN) and self.mm.domains.find(domid) is None:
            return False
        self.foreign = domid
        return True

    def clear_foreigndom(self) -> None:
        """The end of a batch (or MMUEXT_CLEAR_FOREIGNDOM)."""
        self.foreign = None

    def act_for(self, domid: int) -> None:
        """update_va_mapping_otherdomain: Domain-0 acts on `domid`'s frames (the
        caller checked its privilege and that the domain exists)."""
        self.foreign = domid

    def defer_tlb_flush(self, wanted: bool = True) -> None:
        """DOP_FLUSH_TLB: flush once the hypercall's work is done (a new base
        pointer reloads CR3, which flushes: then none is needed)."""
        self.deferred_flush = wanted

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def crash_current(self, detail: str) -> None:
        lifecycle.end_domain(self.pcpu, self.current, "crashed", x86.PF, detail)

    # ---- TLB and translation flushes -----------------------------------------------------
    def local_flush(self, translations: bool = False) -> None:
        """write_cr3: tick the clock, flush, then record this PCPU's flush time."""
        t = self.clock.tick()
        self.core.flush_tlb()
        if translations:
            self.core.flush_translations()
        self.clock.flushed(self.cpu, t, translations)
        self.counts["tlb_flush_local"] += 1
        self.pcpu.trace.trace(TRC_MM_TLB_FLUSH, int(translations))

    def switched(self) -> None:
        """A domain switch reloaded CR3 (the soft TLB was flushed): a clock event.
        Translated code of reused frames is dropped here, lazily, before the next
        domain runs (see alloc_frames)."""
        header = self.clock.header
        stale = header.tb_stale[self.cpu]
        if stale:
            header.tb_stale[self.cpu] = 0
            self.core.flush_translations()
        self.clock.flushed(self.cpu, self.clock.tick(), translations=bool(stale))
        self.load_ldt()                 # switch_to's load_LDT(next)

    def _request_flush(self, cpu: int) -> None:
        if cpu == self.cpu:
            self.deferred_flush = True
        else:
            self.remote_flush.add(cpu)

    def flush_tlb_mask(self, cpus, translations: bool = False, stamp: int | None = None) -> None:
        """Flush every PCPU in `cpus` and wait until each acknowledged. With a frame
        stamp, PCPUs whose last flush is newer than the stamp are skipped (the clock)."""
        cpus = set(cpus)
        skipped = 0
        if stamp is not None and self.use_flush_clock:
            need = set(self.clock.cpus_needing_flush(cpus, stamp, translations))
            skipped = len(cpus - need - {self.cpu})
            self.counts["tlb_flush_ipis_avoided"] += skipped
            cpus = need
        assert self.mm.lock.depth == 0, "flush IPIs must not wait under Locks.mm"
        if self.cpu in cpus:
            self.local_flush(translations)
        remote = sorted(cpus - {self.cpu})
        if remote:
            self.counts["tlb_flush_ipis_sent"] += len(remote)
            self.counts["tlb_shootdowns"] += 1
            mask = sum(1 << c for c in remote)
            self.pcpu.trace.trace(TRC_MM_SHOOTDOWN, len(remote), skipped, mask, mask >> 32)
            self.pcpu.mailbox.call_many(remote, "mm_flush", (translations,))

    def revoke_mappings(self, d: int, mfn: int) -> int:
        """Before another domain's frame is taken away, the PCPU running that domain
        removes its mappings of the frame and flushes (an acknowledged IPI when it
        is not this PCPU)."""
        info = self.mm.domains.find(d)
        if info is None or self.mm.frames[mfn].owner != d or not self.mm.mapped_beyond_allocation(mfn):
            return 0
        if info.processor == self.cpu:
            return remote_mm_revoke(self.pcpu, d, mfn)
        self.counts["revoke_ipis_sent"] += 1
        return self.pcpu.mailbox.call(info.processor, "mm_revoke", (d, mfn))

    def run_deferred(self) -> None:
        """Deferred ops of a hypercall, once Locks.mm is released."""
        if self.remote_flush:
            cpus, self.remote_flush = self.remote_flush, set()
            self.flush_tlb_mask(cpus)
        if self.deferred_flush:
            self.deferred_flush = False
            self.local_flush()
        if self.deferred_ldt:
            self.deferred_ldt = False
            v = self.current
            if v is not None and v.ldt_ents and not v.ended:
                self.map_ldt_shadow_page(0)    # best effort: a failure just faults later

    def alloc_frames(self, domid: int, count: int, flags: int = 0, owner: int | None = None):
        """Frames from the pool for a domain (mm.alloc_domheap_pages says which
        count against it); any PCPU that may still cache one of them (TLB or
        translated code) flushes, acknowledged, before they are used."""
        got = self.mm.alloc_domheap_pages(domid, count, flags, owner)
        if got is None:
            return None
        mfns, tlb, tb, may_cache = got
        t = time.perf_counter_ns()
        if self.use_flush_clock:
            # Stale TLB entries must go now (the clock tells where). Stale translated
            # code only matters once the new owner runs: on the PCPU running it now,
            # at once; elsewhere before that PCPU next switches in a domain.
            owner_cpu = self.mm.domains.find(domid).processor
            now = tlb | (tb & {owner_cpu, self.cpu})
            for cpu in tb - now:
                self.clock.header.tb_stale[cpu] = 1
            self.flush_tlb_mask(now, translations=bool(tb & now))
        else:
            now = may_cache
            self.flush_tlb_mask(may_cache, translations=True)
        if may_cache:
            self.counts["reuse_flush_checks"] += 1
            self.counts["reuse_flush_ns"] += time.perf_counter_ns() - t
            self.counts["tlb_flush_ipis_avoided"] += len(may_cache - now - {self.cpu})
        return mfns

    # ---- address space ----------------------------------------------------------------
    def set_baseptr(self, mfn: int) -> None:
        """Switch the running core to a new page directory (MMUEXT_NEW_BASEPTR)."""
        self.core.set_cr3(mfn << 12)
        self.pcpu.mem.cr3 = mfn << 12
        self.current.info.pt_base_mfn = mfn
        self.switched()

    def load_gdt(self, entries: int) -> None:
        self.core.set_gdtr(GDT_VIRT_START, entries * 8 - 1)

    def default_gdt(self) -> None:
        self.core.set_gdtr(HV_GDT_VA, DEFAULT_GDT_LIMIT)

    # ---- LDT ---------------------------------------------------------------------------
    def set_ldt(self, base: int, ents: int) -> None:
        """MMUEXT_SET_LDT with checked arguments: a new (base, ents) drops the old
        shadow, loads LDTR, and maps page 0 after the batch (Xen's DOP_RELOAD_LDT)."""
        v = self.current
        if (v.ldt_base, v.ldt_ents) == (base, ents):
            return
        self.invalidate_shadow_ldt()
        v.ldt_base, v.ldt_ents = base, ents
        self.load_ldt()
        self.deferred_ldt = ents != 0

    def invalidate_shadow_ldt(self) -> None:
        self.mm.invalidate_shadow_ldt(self.domid)

    def _request_ldt_reload(self, d: int) -> None:
        if self.current is not None and self.current.domid == d:
            self.deferred_ldt = True

    def load_ldt(self) -> None:
        """load_LDT: LDTR covers the current domain's LDT shadow, or is null."""
        v = self.current
        if v is None or not v.ldt_ents:
            self.core.set_ldtr(0, 0, 0, 0)
        else:
            self.core.set_ldtr(ldt_selector(self.cpu), LDT_VIRT_START,
                               v.ldt_ents * A.LDT_ENTRY_SIZE - 1, LDT_DESC_HI)

    def in_ldt_shadow(self, addr: int) -> bool:
        v = self.current
        return v is not None and LDT_VIRT_START <= addr < LDT_VIRT_START + v.ldt_ents * A.LDT_ENTRY_SIZE

    def map_ldt_shadow_page(self, off: int) -> bool:
        """Map page `off` of the current domain's LDT into the shadow, from the PTE
        its current page tables have for ldt_base + off pages."""
        va = self.current.ldt_base + (off << 12)
        active = self.ptwr[PTWR_PT_ACTIVE]
        if active is not None and (va >> 22) == (active.l2e_ma & 0xFFF) >> 2:
            self.ptwr_flush(PTWR_PT_ACTIVE)     # reconnect the L1 the walk needs
            if self.current.ended:
                return False
        _pde_ma, _pde, pte_ma, pte = self.walk(va)
        if pte_ma is None or not self.mm.map_ldt_shadow_page(self.domid, off, pte):
            return False
        self.counts["ldt_shadow_maps"] += 1
        return True

    def ldt_shadow_mapped(self, off: int) -> bool:
        mm = self.mm
        return bool(mm.read_entry(mm.perdomain_entry_ma(self.domid, LDT_FIRST + off)) & P)

    def guest_cr2(self, addr: int) -> int:
        """The address a #PF the hypervisor did not fix is reported at: a fault in
        the LDT shadow is the guest's, at the same offset into its own LDT."""
        if self.in_ldt_shadow(addr):
            return (self.current.ldt_base + addr - LDT_VIRT_START) & 0xFFFFFFFF
        return addr

    def walk(self, va: int):
        """(pde_ma, pde, pte_ma, pte) of va in the current address space; pte_ma is
        None when the L2 entry is not present."""
        mm = self.mm
        pde_ma = (self.pcpu.mem.cr3 & ~0xFFF) + ((va >> 22) << 2)
        pde = mm.read_entry(pde_ma)
        if not pde & P or not mm.is_ram(pde >> 12):
            return pde_ma, pde, None, 0
        pte_ma = (pde & ~0xFFF) + (((va >> 12) & 1023) << 2)
        return pde_ma, pde, pte_ma, mm.read_entry(pte_ma)

    # ---- page faults ---------------------------------------------------------------------
    def page_fault(self, addr: int, error_code: int | None, cpl: int) -> bool:
        """First look at a guest #PF at `addr`. True if the fault was the
        hypervisor's (a writable-page-table fault, a touch of the disconnected
        region, or an LDT page not in the shadow yet) and the guest may simply retry
        the instruction. Without an error code from the core, present/write are
        derived from the page walk. In ring 0 (the entry trampoline) only LDT
        faults are the hypervisor's to fix."""
        if self.current is None or self.current.ended:
            return False
        if self.in_ldt_shadow(addr):
            # A descriptor load touched an LDT page not mapped yet (from the guest,
            # or from the entry trampoline in ring 0 reloading its selectors). A
            # protection fault there (a write: QEMU checks no segment limits, so
            # ring 1 can reach the area) is not ours to fix.
            off = (addr - LDT_VIRT_START) >> 12
            if error_code is not None and error_code & 1 or self.ldt_shadow_mapped(off):
                return False
            return self.map_ldt_shadow_page(off)
        if addr >= A.HYPERVISOR_VIRT_START or cpl == 0:
            return False
        if error_code is None:
            present, write = self.error_code(addr, cpl)
        else:
            present, write = bool(error_code & 1), bool(error_code & 2)
        active = self.ptwr[PTWR_PT_ACTIVE]
        if not present and active is not None and (addr >> 22) == (active.l2e_ma & 0xFFF) >> 2:
            self.ptwr_flush(PTWR_PT_ACTIVE)
            return True
        if present and write and self.current.info.vm_assist >> VMASST_TYPE_writable_pagetables & 1:
            return self.ptwr_do_page_fault(addr)
        return False

    def error_code(self, addr: int, cpl: int) -> tuple[bool, bool]:
        """Unicorn reports no error code: derive present/write from the page walk.
        A supervisor (ring 1) access to a present page can only fault by writing a
        read-only page (CR0.WP); a user access may also fault on a supervisor page,
        which says nothing about write, so it is not counted as one."""
        _pde_ma, pde, pte_ma, pte = self.walk(addr)
        present = pte_ma is not None and bool(pte & P)
        if not present:
            return False, False
        if cpl == 3 and not (pde & pte & USER):
            return True, False
        return True, not (pde & pte & RW)

    def ptwr_do_page_fault(self, addr: int) -> bool:
        mm = self.mm
        pde_ma, pde, pte_ma, pte = self.walk(addr)
        if pte_ma is None:
            return False
        pfn = pte >> 12
        if pte & (RW | P) != P or not mm.is_ram(pfn):
            return False
        f = mm.frames[pfn]
        if f.type_info & PGT_type_mask != PGT_l1_page_table or f.owner != self.domid:
            return False
        va_bits = f.type_info & PGT_va_mask
        if va_bits >= PGT_va_unknown:
            self.crash_current(f"writable page table: L1 {pfn:#x} is mapped at several L2 slots")
            return True
        l2_idx = va_bits >> PGT_va_shift
        l2e_ma = (self.pcpu.mem.cr3 & ~0xFFF) + l2_idx * 4
        which = PTWR_PT_ACTIVE if mm.read_entry(l2e_ma) >> 12 == pfn else PTWR_PT_INACTIVE
        if self.ptwr[which] is not None:
            self.ptwr_flush(which)
            if self.current.ended:
                return True
            pde_ma, pde, pte_ma, pte = self.walk(addr)      # the flush may have re-protected it
        self.counts["ptwr_faults"] += 1
        with mm.lock:
            if which == PTWR_PT_ACTIVE:
                mm.write_entry(l2e_ma, mm.read_entry(l2e_ma) & ~P)   # disconnect
            self.ptwr[which] = PtwrSlot(addr, pte_ma, l2e_ma, pfn, mm.read_table(pfn))
            mm.write_entry(pte_ma, pte | RW)
        self.local_flush()
        return True

    def ptwr_flush(self, which: int) -> None:
        """Write-protect the L1 again, revalidate what the guest changed, reconnect it.
        A bad entry is undone (with everything after it) and the domain crashes."""
        s = self.ptwr[which]
        if s is None:
            return
        mm = self.mm
        d = self.domid
        self.counts["ptwr_flushes"] += 1
        self.pcpu.trace.trace(TRC_MM_PTWR_FLUSH, d, which, s.l1_mfn)
        bad = None
        with mm.lock:
            mm.write_entry(s.pte_ma, mm.read_entry(s.pte_ma) & ~RW)
            self.core.flush_tlb()
            new = mm.read_table(s.l1_mfn)
            base = s.l1_mfn << 12
            for i, (o, n) in enumerate(zip(s.snapshot, new)):
                if o == n:
                    continue
                if o == n | RW:                    # merely write-protected
                    if n & P:
                        mm.put_page_type(n >> 12)
                    continue
                if not mm.get_page_from_l1e(n, d):
                    for j in range(i, 1024):       # keep counts right before crashing
                        mm.write_entry(base + j * 4, s.snapshot[j])
                    bad = (i, n)
                    break
                mm.put_page_from_l1e(o, d)
            if which == PTWR_PT_ACTIVE:
                mm.write_entry(s.l2e_ma, mm.read_entry(s.l2e_ma) | P)
            self.ptwr[which] = None
        self.local_flush()
        if bad is not None:
            self.crash_current(f"writable page table: bad entry {bad[1]:#010x} written at "
                               f"L1 {s.l1_mfn:#x}[{bad[0]}] (refused at reconnection)")

    def reconnect(self, va: int) -> bool:
        """The hypervisor touched the disconnected 4 MiB region (a hypercall argument
        there): reconnect the active writable page table, as Xen's page-fault path
        does for its own accesses. False if va is not in that region."""
        active = self.ptwr[PTWR_PT_ACTIVE]
        if active is None or (va >> 22) != (active.l2e_ma & 0xFFF) >> 2:
            return False
        self.ptwr_flush(PTWR_PT_ACTIVE)
        return True

    def cleanup_writable_pagetables(self) -> None:
        for which in (PTWR_PT_ACTIVE, PTWR_PT_INACTIVE):
            if self.ptwr[which] is not None:
                self.ptwr_flush(which)

    def deschedule(self) -> None:
        """The current domain leaves this PCPU: flush its writable page tables."""
        if self.ptwr[0] is not None or self.ptwr[1] is not None:
            self.cleanup_writable_pagetables()

    def stats(self) -> dict:
        return dict(self.counts)


def remote_mm_revoke(pcpu, d: int, mfn: int) -> int:
    """The owner's side of a revocation: flush the domain's writable page tables if
    it runs here, clear its mappings of the frame, flush this PCPU."""
    paging = pcpu.paging
    if pcpu.current is not None and pcpu.current.domid == d:
        paging.cleanup_writable_pagetables()
    n = paging.mm.zap_mappings(d, mfn)
    paging.local_flush(translations=True)
    return n


def remote_mm_flush(pcpu, translations: bool) -> None:
    """The receiving side of a flush IPI (runs between slices, or inside a hook
    while this PCPU waits for a reply of its own)."""
    pcpu.paging.local_flush(bool(translations))


__all__ = ["Paging", "remote_mm_flush", "remote_mm_revoke"]
