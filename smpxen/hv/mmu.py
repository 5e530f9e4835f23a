"""mmu_update, update_va_mapping and update_va_mapping_otherdomain (memory.c).

mmu_update runs a batch of (ptr, val) requests: normal page-table updates,
machine->phys updates and extended commands. The first failing request stops the
batch with -EINVAL (-EFAULT if the request itself cannot be read); requests before
it stay applied. *success_count receives the number of requests that succeeded
(Xen 2.0.6's rule; 2.0.0 wrote `count` whatever happened). The foreign domain
selected in a batch is dropped at its end, and deferred TLB flushes run once after
the loop, outside the frame-table lock.

A batch is preemptible, as Xen 2.0.x's: the frame-table lock is taken for one
request at a time, and when the PCPU has other work due the call stops with a
continuation, which the guest makes when it next runs: the rest of the list, with
count | MMU_UPDATE_PREEMPTED, and what was done so far in *success_count. Xen 2.0.x
kept the batch's FOREIGNDOM in count's bits 16-30, which capped a batch at 65 535
requests; smpxen passes it in the continuation's fourth argument (ESI) instead."""
from __future__ import annotations

import struct

from smpxen.hv.iface import Hypervisor
from smpxen.hv.guestmem import GuestFault
from smpxen.shm.frametable import PGT_l1_page_table, PGT_l2_page_table
from smpxen.xen import errno
from smpxen.xen.arch_x86_32 import HYPERVISOR_VIRT_START, LDT_ENTRY_SIZE, MAX_LDT_ENTRIES, PAGE_OFFSET
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.xen import (MMU_EXTENDED_COMMAND, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
                            MMUEXT_CLEAR_FOREIGNDOM, MMUEXT_CMD_MASK, MMUEXT_CMD_SHIFT,
                            MMUEXT_INVLPG, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
                            MMUEXT_PIN_L2_TABLE, MMUEXT_SET_FOREIGNDOM, MMUEXT_SET_LDT,
                            MMUEXT_TLB_FLUSH, MMUEXT_UNPIN_TABLE, MMU_UPDATE_PREEMPTED, UVMF_FLUSH_TLB,
                            UVMF_INVLPG)

_req = struct.Struct("<II")


def guest_range_ok(va: int, nbytes: int) -> bool:
    """access_ok: the whole range lies below the hypervisor."""
    return nbytes >= 0 and va + nbytes <= HYPERVISOR_VIRT_START


def do_mmu_update(hv: Hypervisor, ureqs, count, success_count, foreign, _a5):
    paging = hv.paging
    paging.cleanup_writable_pagetables()
    rc, i, done = 0, 0, 0
    try:
        if count & MMU_UPDATE_PREEMPTED:      # the rest of a batch we preempted
            count &= ~MMU_UPDATE_PREEMPTED
            foreign &= 0xFFFF
            if success_count:
                try:
                    done = hv.mem.read_u32(success_count)
                except GuestFault:
                    pass
            if foreign != paging.domid and not paging.set_foreigndom(foreign):
                return -errno.EINVAL
        if count and not guest_range_ok(ureqs, count * _req.size):
            return -errno.EFAULT
        while i < count:
            if i and hv.preempt_pending():     # after one request at least: progress
                rc = hv.create_continuation(Hypercall.mmu_update, ureqs + i * _req.size,
                                            (count - i) | MMU_UPDATE_PREEMPTED, success_count,
                                            paging.foreigndom())
                break
            try:
                ptr, val = _req.unpack(hv.mem.read(ureqs + i * _req.size, _req.size))
            except GuestFault:
                rc = -errno.EFAULT
                break
            with hv.mm.lock:
                ok = _mmu_request(hv, paging, ptr, val)
            if not ok:
                rc = -errno.EINVAL
                break
            i += 1
    finally:
        paging.clear_foreigndom()
        paging.count("mmu_update_entries", i)
        paging.run_deferred()
        if success_count:
            try:
                hv.mem.write_u32(success_count, done + i)
            except GuestFault:
                pass            # put_user's failure is ignored, as in Xen
    return rc


def _mmu_request(hv: Hypervisor, paging, ptr: int, val: int) -> bool:
    mm = hv.mm
    cmd = ptr & 3
    if cmd == MMU_NORMAL_PT_UPDATE:
        return mm.update_entry(ptr, val, paging.domid, paging.foreigndom())
    if cmd == MMU_MACHPHYS_UPDATE:
        mfn = ptr >> 12
        if not mm.get_page(mfn, paging.foreigndom()):
            return False
        mm.set_m2p(mfn, val)
        mm.put_page(mfn)
        return True
    if cmd == MMU_EXTENDED_COMMAND:
        return _extended_command(hv, paging, ptr & ~3, val)
    return False


def _extended_command(hv: Hypervisor, paging, ptr: int, val: int) -> bool:
    mm = hv.mm
    cmd = val & MMUEXT_CMD_MASK
    pfn = ptr >> 12
    if cmd == MMUEXT_PIN_L1_TABLE:
        return mm.pin_table(pfn, PGT_l1_page_table, paging.foreigndom())
    if cmd == MMUEXT_PIN_L2_TABLE:
        return mm.pin_table(pfn, PGT_l2_page_table, paging.foreigndom())
    if cmd == MMUEXT_UNPIN_TABLE:
        return mm.unpin_table(pfn, paging.foreigndom())
    if cmd == MMUEXT_NEW_BASEPTR:
        if not mm.get_page_and_type(pfn, paging.domid, PGT_l2_page_table):
            return False
        old = hv.current.info.pt_base_mfn
        paging.invalidate_shadow_ldt()       # its pages were found through the old tables
        paging.set_baseptr(pfn)              # reloading CR3 flushes: no deferred flush needed
        paging.defer_tlb_flush(False)
        mm.put_page_and_type(old)
        return True
    if cmd == MMUEXT_TLB_FLUSH:
        paging.defer_tlb_flush()
        return True
    if cmd == MMUEXT_INVLPG:
        paging.local_flush()                 # Unicorn flushes its soft TLB whole, not by page
        return True
    if cmd == MMUEXT_SET_LDT:
        ents = val >> MMUEXT_CMD_SHIFT
        end = ptr + ents * LDT_ENTRY_SIZE
        if ptr & 0xFFF or ents > MAX_LDT_ENTRIES or end > PAGE_OFFSET:
            return False
        paging.set_ldt(ptr, ents)            # pages are typed and mapped as they fault in
        return True
    if cmd == MMUEXT_SET_FOREIGNDOM:
        return paging.set_foreigndom(val >> 16)
    if cmd == MMUEXT_CLEAR_FOREIGNDOM:
        paging.clear_foreigndom()
        return True
    # FLUSH_CACHE needs a physical-device domain (none exists); TRANSFER_PAGE and
    # REASSIGN_PAGE need grant tables, not modelled; L3/L4 pins do not exist on x86_32.
    return False


def do_update_va_mapping(hv: Hypervisor, page_nr, val, flags, *_):
    if page_nr >= HYPERVISOR_VIRT_START >> 12:
        return -errno.EINVAL
    paging = hv.paging
    paging.cleanup_writable_pagetables()
    mm = hv.mm
    ok = False
    with mm.lock:
        _pde_ma, pde, pte_ma, _pte = paging.walk(page_nr << 12)
        # linear_pg_table[page_nr]: the PTE must sit in one of the caller's L1 tables
        # (not in an L2 reached through a linear self-map).
        if pte_ma is not None and mm.is_l1_of(pde >> 12, paging.domid):
            ok = mm.mod_l1_entry(pte_ma, val, paging.domid, paging.foreigndom())
    paging.run_deferred()
    if flags & (UVMF_FLUSH_TLB | UVMF_INVLPG):
        paging.local_flush()
    return 0 if ok else -errno.EINVAL


def do_update_va_mapping_otherdomain(hv: Hypervisor, page_nr, val, flags, domid, _a5):
    if not hv.current.privileged:
        return -errno.EPERM
    paging = hv.paging
    if hv.domains.find(domid & 0xFFFF) is None:
        return -errno.ESRCH
    paging.act_for(domid & 0xFFFF)
    try:
        return do_update_va_mapping(hv, page_nr, val, flags, 0, 0)
    finally:
        paging.clear_foreigndom()

