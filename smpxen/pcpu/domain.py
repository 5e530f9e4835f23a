"""Domains made and unmade at run time (Xen 2.0 common/domain.c do_createdomain,
alloc_new_dom_mem, domain_kill, domain_destruct; common/dom0_ops.c allocate_domid),
for DOM0_CREATEDOMAIN, DOM0_SETDOMAININITIALMEM, DOM0_BUILDDOMAIN and
DOM0_DESTROYDOMAIN.

Creation runs on the PCPU of the Domain-0 hypercall: a free id (Xen's rotation over
1..topdom), a domain-table slot, the per-domain page table and shared_info, the
memory (zeroed; the flush clock makes every PCPU that may still cache a reused
frame flush first); then the PCPU chosen for the domain adopts it, control-paused
(`dom_adopt`). It runs nothing until BUILDDOMAIN gave it a context and
UNPAUSEDOMAIN started it.

Destruction runs on the PCPU hosting the domain (`dom_kill`, a remote call), in an
order that leaves no reference behind: off the CPU (if it is running there the
reply waits until the loop has switched it out between slices: DEFERRED), out of
the scheduler, its timer and queued moves dropped, its event channels closed
(peers see them unbound), its writable page tables already flushed on the way out
(smpxen/pcpu/schedule.py), its base pointer, GDT and LDT shadow released, every
frame relinquished (smpxen/mm/relinquish.py: freed frames carry the flush clock's
stamp), mappings Domain-0 still holds of its frames revoked by Domain-0's PCPU, its
per-domain page table freed, and its slot zeroed, so its id can be given again. A
frame still referenced after all that (nothing in smpxen leaves one) would keep
the slot as a dying zombie, as Xen keeps a domain whose pages are held."""
from __future__ import annotations

from smpxen.domain import ctrl_channel
from smpxen.ipc import messages as M
from smpxen.pcpu import schedule, vcpuctx
from smpxen.pcpu.vcpu import Vcpu
from smpxen.sched.flags import DFM_DYING
from smpxen.shm.domains import DS_DYING, DS_RUNNING
from smpxen.shm.frametable import FF_XEN_HEAP, OWNER_XEN
from smpxen.shm.layout import MAX_DOMAINS
from smpxen.xen import errno
from smpxen.xen.structs import SharedInfo
from smpxen.xen.xen import DOMID_FIRST_RESERVED

MOVED = "moved"          # dom_kill's answer when this PCPU does not host the domain (any more)
NO_CPU = 0xFFFFFFFF      # DOM0_CREATEDOMAIN's cpu -1: the least-populated PCPU
PAGE_KB = 4


# ---- creation ----------------------------------------------------------------------------
def allocate_domid(pcpu) -> int | None:
    """allocate_domid: the next free id after the last one handed out, in
    1..topdom-1 first, then above topdom (which then grows). None if none is free.
    Call under Locks.domains."""
    h = pcpu.frames.header
    domains = pcpu.domains
    cur, top = h.next_domid, h.top_domid
    dom = cur + 1
    while dom != cur:
        if dom >= top:
            dom = 1
            if dom == cur:
                break
        if domains.find(dom) is None:
            h.next_domid = dom
            return dom
        dom += 1
    for dom in range(top, DOMID_FIRST_RESERVED):
        if domains.find(dom) is None:
            h.top_domid = dom + 1
            h.next_domid = dom
            return dom
    return None


def _least_populated(pcpu) -> int:
    counts = [0] * pcpu.nr_pcpus
    for d in pcpu.domains.live():
        if 0 <= d.processor < pcpu.nr_pcpus:
            counts[d.processor] += 1
    return min(range(pcpu.nr_pcpus), key=lambda i: (counts[i], i))


def create_domain(pcpu, want: int, cpu: int, memory_kb: int) -> tuple[int, int]:
    """DOM0_CREATEDOMAIN: (0, the new domain's id) or (-errno, 0)."""
    with pcpu.locks.domains:
        if 0 < want < DOMID_FIRST_RESERVED:
            if pcpu.domains.find(want) is not None:
                return -errno.EINVAL, 0
            domid = want
        else:
            domid = allocate_domid(pcpu)
            if domid is None:
                return -errno.ENOMEM, 0
        processor = _least_populated(pcpu) if cpu == NO_CPU else cpu % pcpu.nr_pcpus
        if len(pcpu.domains.live()) >= MAX_DOMAINS:
            return -errno.ENOMEM, 0            # Xen: alloc_domain_struct failed
        info = pcpu.domains.allocate(domid)
        info.processor = processor
    paging = pcpu.paging
    for owner, flags, field in ((OWNER_XEN, 0, "perdomain_pt_mfn"), (None, FF_XEN_HEAP, "shared_info_mfn")):
        got = paging.alloc_frames(domid, 1, flags=flags, owner=owner)
        if not got:
            _undo_create(pcpu, domid)
            return -errno.ENOMEM, 0
        paging.mm.scrub_frame(got[0])
        setattr(info, field, got[0])
    rc = alloc_new_dom_mem(pcpu, domid, memory_kb)
    if rc == 0:
        rc = pcpu.mailbox.call(processor, "dom_adopt", [domid])
    if rc:
        _undo_create(pcpu, domid)
        return rc, 0
    pcpu.printk.printk(f"domain {domid} created on pcpu {processor} with {memory_kb} KiB")
    pcpu.mailbox.send_machine(M.DOMAIN_CREATED, pcpu.index, domid, processor, info.max_pages)
    return 0, domid


def _undo_create(pcpu, domid: int) -> None:
    """A creation that failed half way: give back what it took."""
    info = pcpu.domains.find(domid)
    mm = pcpu.paging.mm
    mm.relinquish_memory(domid, 0)
    if info.perdomain_pt_mfn:
        mm.free_xen_frame(info.perdomain_pt_mfn, info.processor)
    with pcpu.locks.domains:
        pcpu.domains.free(domid)


def alloc_new_dom_mem(pcpu, domid: int, memory_kb: int) -> int:
    """alloc_new_dom_mem: max_pages becomes the size asked for, and the domain grows
    to it (zeroed frames; M2P entries the likely pfn). All or nothing: -ENOMEM
    gives back what this call took."""
    info = pcpu.domains.find(domid)
    mm = pcpu.paging.mm
    nr_pages = (memory_kb + PAGE_KB - 1) // PAGE_KB
    with mm.lock:
        info.max_pages = nr_pages
        have = info.tot_pages
    want = nr_pages - have
    if want <= 0:
        return 0
    mfns = pcpu.paging.alloc_frames(domid, want)
    if mfns is None:
        return -errno.ENOMEM
    for pfn, mfn in enumerate(mfns, start=have):
        mm.scrub_frame(mfn)
        mm.set_m2p(mfn, pfn)
    return 0


def dom_adopt(pcpu, domid: int) -> int:
    """REMOTE_FUNCTIONS["dom_adopt"] (sched_add_domain): the new domain is hosted
    here from now on, control-paused."""
    info = pcpu.domains.find(domid)
    if info is None or info.processor != pcpu.index:
        return -errno.ESRCH
    shared = SharedInfo.from_buffer(pcpu.ram.mem, info.shared_info_mfn << 12)
    pcpu.vcpus[domid] = Vcpu(domid, info, shared)
    pcpu.sched.add_domain(domid, pcpu.clock.now(), paused=True)
    schedule.mirror_domain_state(pcpu)
    return 0


def dom_build(pcpu, domid: int, ctxt: bytes) -> int:
    """REMOTE_FUNCTIONS["dom_build"] (final_setup_guestos)."""
    v = pcpu.vcpus.get(domid)
    if v is None or v.ended:
        return -errno.EINVAL
    rc = vcpuctx.build(pcpu, v, bytes(ctxt))
    if rc == 0:
        v.info.state = DS_RUNNING
        # Its image was written behind the cores' backs (Domain-0's tools, through
        # privcmd) into frames that alloc_frames handed over with no translated code
        # left of them anywhere (smpxen/pcpu/paging.py): nothing to drop here.
        schedule.update_dom_time(pcpu, v)
    return rc


def dom_getctxt(pcpu, domid: int):
    """REMOTE_FUNCTIONS["dom_getctxt"]: full_execution_context_t bytes, or -ESRCH."""
    v = pcpu.vcpus.get(domid)
    return -errno.ESRCH if v is None else vcpuctx.get_context(pcpu, v)


# ---- destruction ---------------------------------------------------------------------------
def dom_kill(pcpu, domid: int):
    """REMOTE_FUNCTIONS["dom_kill"] (domain_kill): 0, -ESRCH, MOVED, or the
    mailbox's DEFERRED while the domain is on this CPU."""
    if pcpu.domains.find(domid) is None:
        return -errno.ESRCH
    v = pcpu.vcpus.get(domid)
    if v is None:
        return MOVED
    if v is pcpu.current:
        v.info.flags |= DFM_DYING
        if pcpu.sched.has_domain(domid):
            r = pcpu.sched.pause(domid, pcpu.clock.now())
            del r                                    # off the CPU at the next reschedule
        schedule.request_resched(pcpu)
        pcpu.pending_kills.append((domid, pcpu.mailbox.caller()))
        return pcpu.mailbox.DEFERRED
    teardown(pcpu, v)
    return 0


def do_pending_kills(pcpu) -> None:
    """Between slices: tear down the domains whose kill had to wait until they were
    off the CPU, and answer their callers."""
    while pcpu.pending_kills:
        domid, caller = pcpu.pending_kills.pop(0)
        v = pcpu.vcpus.get(domid)
        if v is not None and v is pcpu.current:
            schedule.reschedule(pcpu)             # paused: something else (or idle) runs
        rc = teardown(pcpu, v) if v is not None else -errno.ESRCH
        pcpu.mailbox.reply(caller, rc)


def teardown(pcpu, v) -> int:
    """Everything of domain v (hosted here, not on the CPU) goes."""
    domid, info = v.domid, v.info
    info.flags |= DFM_DYING
    sched, now = pcpu.sched, pcpu.clock.now()
    if sched.has_domain(domid):
        cpu_time = sched.cpu_time(domid, now)
        sched.remove_domain(domid)
    else:
        cpu_time = pcpu.ended_cpu_time.get(domid, 0)
    pcpu.ended_cpu_time.pop(domid, None)
    pcpu.clock.timers.cancel(("domain", domid))
    pcpu.pending_migrations = [(d, t) for d, t in pcpu.pending_migrations if d != domid]
    ctrl_channel.disconnect(pcpu.events.tables, domid)      # the controller lets go of it
    pcpu.ctrl_if.domain_gone(domid)
    ports = pcpu.events.tables.destroy_domain(domid)
    mm = pcpu.paging.mm
    held = mm.relinquish_memory(domid, info.pt_base_mfn)
    if held:
        held = _revoke_foreign_mappings(pcpu, domid, held)
    pcpu.paging.run_deferred()
    if info.perdomain_pt_mfn:
        mm.free_xen_frame(info.perdomain_pt_mfn, pcpu.index)
        info.perdomain_pt_mfn = 0
    del pcpu.vcpus[domid]
    stats = {"hypercalls": v.hypercalls, "slices": v.slices, "cpu_time_ns": cpu_time,
             "pcpus_ran": sorted(v.pcpus_ran), **v.hypercall_stats()}
    if held:
        info.state = DS_DYING
        pcpu.printk.printk(f"domain {domid} destroyed; {len(held)} of its frames are still "
                           f"referenced, so it stays a zombie")
    else:
        with pcpu.locks.domains:
            pcpu.domains.free(domid)
        pcpu.printk.printk(f"domain {domid} destroyed ({ports} event channels closed)")
    pcpu.mailbox.send_machine(M.DOMAIN_DESTROYED, pcpu.index, domid, stats)
    return 0


def _revoke_foreign_mappings(pcpu, domid: int, held: list[int]) -> list[int]:
    """Frames of the dying domain that other (privileged) domains still map: each
    such domain's PCPU removes its mappings (smpxen/pcpu/paging.py
    remote_mm_revoke), which drops the last references. Returns what is still held."""
    mm = pcpu.paging.mm
    for other in pcpu.domains.live():
        if other.domid == domid or not other.privileged:
            continue
        for mfn in held:
            pcpu.mailbox.call(other.processor, "mm_revoke", [other.domid, mfn])
    return [mfn for mfn in held if mm.frames[mfn].owner == domid]


def destroy_domain(pcpu, domid: int) -> int:
    """DOM0_DESTROYDOMAIN, from the caller's PCPU: kill the domain where it lives,
    following it if it is moving between PCPUs (its new PCPU answers MOVED until
    the move's IPI has arrived; this PCPU keeps serving its own messages meanwhile,
    one of which may be that IPI)."""
    while True:
        info = pcpu.domains.find(domid)
        if info is None or info.state == DS_DYING:
            return -errno.ESRCH
        rc = pcpu.mailbox.call(info.processor, "dom_kill", [domid])
        if rc != MOVED:
            return rc
        pcpu.mailbox.handle_messages()
