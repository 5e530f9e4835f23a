"""dom0_op (xen/common/dom0_ops.c, xen/arch/x86/dom0_ops.c): the privileged control
interface. Operations on a domain hosted by another PCPU are carried out by that
PCPU (its scheduler and its domains' CPU state are its own); the hypervisor
services object routes them. Not modelled, so -ENOSYS as an unknown command:
DOM0_DEBUG (Xen's pervasive debugger), DOM0_PCIDEV_ACCESS (no PCI devices),
DOM0_SHADOW_CONTROL (no shadow page tables); DOM0_GETTBUFS belongs to tracing."""
import ctypes
import struct

from smpxen.hv.guestmem import GuestFault
from smpxen.hv.iface import Hypervisor
from smpxen.sched.flags import DFM_CONSTRUCTED, getdomaininfo_flags
from smpxen.shm.frametable import (PGT_count_mask, PGT_l1_page_table, PGT_l2_page_table,
                                   PGT_l3_page_table, PGT_l4_page_table, PGT_pinned, PGT_type_mask)
from smpxen.xen import dom0_ops as D, errno
from smpxen.xen.trace import TRC_DOM0OP_ENTER_BASE, TRC_DOM0OP_LEAVE_BASE
from smpxen.xen.structs import FullExecutionContext

_OP_SIZE = ctypes.sizeof(D.Dom0Op)


def _union(hv: Hypervisor, op_va, struct):
    return struct.from_buffer_copy(hv.mem.read(op_va + D.UNION_OFFSET, ctypes.sizeof(struct)))


def _put_union(hv: Hypervisor, op_va, value) -> None:
    hv.mem.write(op_va + D.UNION_OFFSET, bytes(value))


def _put_union_ignoring_faults(hv: Hypervisor, op_va, value) -> None:
    """Xen's copy_to_user whose failure the operation ignores."""
    try:
        _put_union(hv, op_va, value)
    except GuestFault:
        pass


def getdomaininfo(hv: Hypervisor, op_va):
    req = _union(hv, op_va, D.GetDomainInfo)
    info = hv.domains.first_from(req.domain)
    if info is None:
        return -errno.ESRCH
    out = D.GetDomainInfo()
    out.domain = info.domid
    out.flags = getdomaininfo_flags(info.flags, info.processor, info.shutdown_code)
    out.ctxt = req.ctxt
    out.tot_pages = info.tot_pages
    out.max_pages = info.max_pages
    out.shared_info_frame = info.shared_info_mfn
    out.cpu_time = info.cpu_time_ns
    rc = 0
    if req.ctxt:
        ctxt = hv.domain_context(info.domid)
        if isinstance(ctxt, int):
            return ctxt
        try:
            hv.mem.write(req.ctxt, ctxt)
        except GuestFault:
            rc = -errno.EINVAL               # Xen's answer to a bad ctxt pointer
    try:
        _put_union(hv, op_va, out)
    except GuestFault:
        return -errno.EINVAL
    return rc


def settime(hv: Hypervisor, op_va):
    t = _union(hv, op_va, D.SetTime)
    hv.settime(t.secs, t.usecs, t.system_time)
    return 0


def pincpudomain(hv: Hypervisor, op_va):
    p = _union(hv, op_va, D.PinCpuDomain)
    return hv.pin_domain(p.domain, p.cpu)


def pause(hv: Hypervisor, op_va):
    return hv.pause_domain(_union(hv, op_va, D.DomainOnly).domain, True)


def unpause(hv: Hypervisor, op_va):
    domid = _union(hv, op_va, D.DomainOnly).domain
    info = hv.domains.find(domid)
    if info is None:
        return -errno.ESRCH
    if not info.flags & DFM_CONSTRUCTED:
        return -errno.EINVAL                 # not built yet (DOM0_BUILDDOMAIN)
    return hv.pause_domain(domid, False)


def adjustdom(hv: Hypervisor, op_va):
    a = _union(hv, op_va, D.AdjustDom)
    if a.sched_id != D.SCHED_BVT:
        return -errno.EINVAL
    if a.direction == D.SCHED_INFO_PUT:
        params = (a.mcu_adv, a.warpback, a.warpvalue, a.warpl, a.warpu)
        rc = hv.adjust_domain(a.domain, D.SCHED_INFO_PUT, params)
        return rc if rc in (-errno.ESRCH,) else 0   # Xen's sched_adjdom drops BVT's -EINVAL
    if a.direction == D.SCHED_INFO_GET:
        got = hv.adjust_domain(a.domain, D.SCHED_INFO_GET, None)
        if isinstance(got, int):
            return got
        a.mcu_adv, a.warpback, a.warpvalue, a.warpl, a.warpu = got
        _put_union(hv, op_va, a)
        return 0
    return -errno.EINVAL


def schedctl(hv: Hypervisor, op_va):
    c = _union(hv, op_va, D.SchedCtl)
    if c.sched_id != D.SCHED_BVT or c.direction not in (D.SCHED_INFO_PUT, D.SCHED_INFO_GET):
        return -errno.EINVAL
    c.ctx_allow = hv.sched_ctl(c.direction, c.ctx_allow)
    _put_union(hv, op_va, c)
    return 0


def sched_id(hv: Hypervisor, op_va):
    _put_union(hv, op_va, D.SchedId(D.SCHED_BVT))
    return 0


def physinfo(hv: Hypervisor, op_va):
    p = D.PhysInfo()
    info = hv.physinfo()
    p.ht_per_core, p.cores = 1, info["cpus"]
    p.cpu_khz = info["cpu_khz"]
    p.total_pages, p.free_pages = info["total_pages"], info["free_pages"]
    _put_union(hv, op_va, p)
    return 0


def gettbufs(hv: Hypervisor, op_va):
    """Where the trace buffers are (Xen 2.0's get_tb_info): -ENODATA and zeros
    when the machine has none."""
    out = D.GetTbufs()
    info = hv.tbuf_info()
    if info is not None:
        out.mach_addr, out.size = info
    _put_union(hv, op_va, out)
    return 0 if info is not None else -errno.ENODATA


# ---- domains made and unmade ----------------------------------------------------------------
def createdomain(hv: Hypervisor, op_va):
    c = _union(hv, op_va, D.CreateDomain)
    rc, domid = hv.create_domain(c.domain, c.cpu, c.memory_kb)
    if rc:
        return rc
    c.domain = domid
    _put_union_ignoring_faults(hv, op_va, c)
    return 0


def destroydomain(hv: Hypervisor, op_va):
    domid = _union(hv, op_va, D.DomainOnly).domain
    if hv.domains.find(domid) is None:
        return -errno.ESRCH
    if domid == hv.current.domid:
        return -errno.EINVAL                 # a domain does not destroy itself
    return hv.destroy_domain(domid)


def builddomain(hv: Hypervisor, op_va):
    b = _union(hv, op_va, D.BuildDomain)
    info = hv.domains.find(b.domain)
    if info is None or info.flags & DFM_CONSTRUCTED:
        return -errno.EINVAL
    ctxt = hv.mem.read(b.ctxt, ctypes.sizeof(FullExecutionContext))    # a fault: -EFAULT
    return hv.build_domain(b.domain, ctxt)


def setdomaininitialmem(hv: Hypervisor, op_va):
    m = _union(hv, op_va, D.SetDomainMem)
    info = hv.domains.find(m.domain)
    if info is None:
        return -errno.ESRCH
    if info.flags & DFM_CONSTRUCTED:
        return -errno.EINVAL                 # only before the domain is built
    return hv.alloc_domain_memory(m.domain, m.memkb)


def setdomainmaxmem(hv: Hypervisor, op_va):
    """max_memkb in kilobytes, as its name and Xen's tools say (Xen 2.0 itself rounds
    (max_memkb + 4095) >> 12 pages, reading it as bytes)."""
    m = _union(hv, op_va, D.SetDomainMem)
    info = hv.domains.find(m.domain)
    if info is None:
        return -errno.ESRCH
    with hv.mm.lock:
        info.max_pages = (m.memkb + 3) // 4
    return 0


def setdomainvmassist(hv: Hypervisor, op_va):
    a = _union(hv, op_va, D.SetDomainVmAssist)
    if hv.domains.find(a.domain) is None:
        return -errno.ESRCH
    hv.set_vm_assist(a.domain, a.cmd, a.type)
    return 0                                 # Xen 2.0 drops vm_assist's own answer


def iopl(hv: Hypervisor, op_va):
    """For the domain named (Xen 2.0 changes the caller's EFLAGS, whatever domain is
    named: 'XXX Currently the domain field is ignored')."""
    i = _union(hv, op_va, D.Iopl)
    return hv.set_iopl(i.domain, i.iopl & 3)


# ---- memory and frames -------------------------------------------------------------------------
def getmemlist(hv: Hypervisor, op_va):
    g = _union(hv, op_va, D.GetMemList)
    if hv.domains.find(g.domain) is None:
        return -errno.EINVAL
    frames = hv.mm.domain_frames(g.domain, xen_heap=False)[:g.max_pfns]
    done, rc = len(frames), 0
    try:
        hv.mem.write(g.buffer, struct.pack(f"<{done}I", *frames))
    except GuestFault:                       # put_user frame by frame, up to the fault
        done, rc = 0, -errno.EFAULT
        for mfn in frames:
            try:
                hv.mem.write_u32(g.buffer + 4 * done, mfn)
            except GuestFault:
                break
            done += 1
    g.num_pfns = done
    _put_union_ignoring_faults(hv, op_va, g)
    return rc


_FRAME_TYPES = {PGT_l1_page_table: D.L1TAB, PGT_l2_page_table: D.L2TAB,
                PGT_l3_page_table: D.L3TAB, PGT_l4_page_table: D.L4TAB}


def getpageframeinfo(hv: Hypervisor, op_va):
    p = _union(hv, op_va, D.GetPageFrameInfo)
    mm = hv.mm
    if not mm.is_ram(p.pfn) or hv.domains.find(p.domain) is None:
        return -errno.EINVAL
    rc = -errno.EINVAL
    with mm.lock:
        if mm.get_page(p.pfn, p.domain):
            t = mm.frames[p.pfn].type_info
            p.type = _FRAME_TYPES.get(t & PGT_type_mask, D.NOTAB) if t & PGT_count_mask else D.NOTAB
            mm.put_page(p.pfn)
            rc = 0
    _put_union_ignoring_faults(hv, op_va, p)
    return rc


def getpageframeinfo2(hv: Hypervisor, op_va):
    g = _union(hv, op_va, D.GetPageFrameInfo2)
    if hv.domains.find(g.domain) is None:
        return -errno.ESRCH
    if g.num > D.GPF2_MAX:
        return -errno.E2BIG
    try:
        mfns = struct.unpack(f"<{g.num}I", hv.mem.read(g.array, 4 * g.num))
    except GuestFault:
        return -errno.EINVAL
    mm = hv.mm
    out = []
    with mm.lock:
        for mfn in mfns:
            if mm.is_ram(mfn) and mm.get_page(mfn, g.domain):
                t = mm.frames[mfn].type_info
                kind = _FRAME_TYPES.get(t & PGT_type_mask, D.NOTAB) | (D.LPINTAB if t & PGT_pinned else 0)
                mm.put_page(mfn)
            else:
                kind = D.XTAB
            out.append((mfn | kind) & 0xFFFFFFFF)
    try:
        hv.mem.write(g.array, struct.pack(f"<{g.num}I", *out))
    except GuestFault:
        return -errno.EINVAL
    return 0


# ---- the machine: console ring, MSRs ----------------------------------------------------------
def readconsole(hv: Hypervisor, op_va):
    r = _union(hv, op_va, D.ReadConsole)
    data = hv.read_console(False)[:r.count]
    hv.mem.write(r.str, data)                # a fault: -EFAULT, the ring kept
    if r.cmd & D.CONSOLE_RING_CLEAR:
        hv.read_console(True)
    return len(data)


def msr(hv: Hypervisor, op_va):
    m = _union(hv, op_va, D.Msr)
    rc, m.out1, m.out2 = hv.msr(bool(m.write), m.cpu_mask, m.msr, m.in1, m.in2)
    if rc:
        return rc
    if not m.write:
        _put_union_ignoring_faults(hv, op_va, m)
    return 0


OPS = {
    D.DOM0_CREATEDOMAIN: createdomain,
    D.DOM0_DESTROYDOMAIN: destroydomain,
    D.DOM0_BUILDDOMAIN: builddomain,
    D.DOM0_GETMEMLIST: getmemlist,
    D.DOM0_GETPAGEFRAMEINFO: getpageframeinfo,
    D.DOM0_GETPAGEFRAMEINFO2: getpageframeinfo2,
    D.DOM0_SETDOMAININITIALMEM: setdomaininitialmem,
    D.DOM0_SETDOMAINMAXMEM: setdomainmaxmem,
    D.DOM0_SETDOMAINVMASSIST: setdomainvmassist,
    D.DOM0_IOPL: iopl,
    D.DOM0_MSR: msr,
    D.DOM0_READCONSOLE: readconsole,
    D.DOM0_GETDOMAININFO: getdomaininfo,
    D.DOM0_SETTIME: settime,
    D.DOM0_PINCPUDOMAIN: pincpudomain,
    D.DOM0_PAUSEDOMAIN: pause,
    D.DOM0_UNPAUSEDOMAIN: unpause,
    D.DOM0_ADJUSTDOM: adjustdom,
    D.DOM0_SCHEDCTL: schedctl,
    D.DOM0_SCHED_ID: sched_id,
    D.DOM0_PHYSINFO: physinfo,
    D.DOM0_GETTBUFS: gettbufs,
}


def do_dom0_op(hv: Hypervisor, op_va, *_):
    if not hv.current.privileged:
        return -errno.EPERM
    head = D.Dom0Op.from_buffer_copy(hv.mem.read(op_va, _OP_SIZE))
    if head.interface_version != D.DOM0_INTERFACE_VERSION:
        return -errno.EACCES
    # Traced on the way in and out, as Xen's do_dom0_op: the union's first words.
    cmd, words = head.cmd & 0xFFF, struct.unpack_from("<4I", bytes(head.u))
    hv.trace(TRC_DOM0OP_ENTER_BASE + cmd, 0, *words)
    op = OPS.get(head.cmd)
    rc = -errno.ENOSYS if op is None else op(hv, op_va)
    hv.trace(TRC_DOM0OP_LEAVE_BASE + cmd, rc, *words)
    return rc
