"""dom0_op (xen/common/dom0_ops.c): the privileged control interface. Operations
on a domain hosted by another PCPU are carried out by that PCPU (its scheduler and
its domains' CPU state are its own); the hypervisor services object routes them."""
import ctypes

from smpxen.hv.iface import Hypervisor
from smpxen.sched.flags import getdomaininfo_flags
from smpxen.xen import dom0_ops as D, errno

_OP_SIZE = ctypes.sizeof(D.Dom0Op)


def _union(hv: Hypervisor, op_va, struct):
    return struct.from_buffer_copy(hv.mem.read(op_va + D.UNION_OFFSET, ctypes.sizeof(struct)))


def _put_union(hv: Hypervisor, op_va, value) -> None:
    hv.mem.write(op_va + D.UNION_OFFSET, bytes(value))


def getdomaininfo(hv: Hypervisor, op_va):
    req = _union(hv, op_va, D.GetDomainInfo)
    info = hv.domains.first_from(req.domain)
    if info is None:
        return -errno.ESRCH
    out = D.GetDomainInfo()
    out.domain = info.domid
    out.flags = getdomaininfo_flags(info.flags, info.processor, info.shutdown_code)
    out.ctxt = req.ctxt                     # saving the VCPU context is not offered yet
    out.tot_pages = info.tot_pages
    out.max_pages = info.max_pages
    out.shared_info_frame = info.shared_info_mfn
    out.cpu_time = info.cpu_time_ns
    _put_union(hv, op_va, out)
    return 0


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
    return hv.pause_domain(_union(hv, op_va, D.DomainOnly).domain, False)


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


OPS = {
    D.DOM0_GETDOMAININFO: getdomaininfo,
    D.DOM0_SETTIME: settime,
    D.DOM0_PINCPUDOMAIN: pincpudomain,
    D.DOM0_PAUSEDOMAIN: pause,
    D.DOM0_UNPAUSEDOMAIN: unpause,
    D.DOM0_ADJUSTDOM: adjustdom,
    D.DOM0_SCHEDCTL: schedctl,
    D.DOM0_SCHED_ID: sched_id,
    D.DOM0_PHYSINFO: physinfo,
}


def do_dom0_op(hv: Hypervisor, op_va, *_):
    if not hv.current.privileged:
        return -errno.EPERM
    head = D.Dom0Op.from_buffer_copy(hv.mem.read(op_va, _OP_SIZE))
    if head.interface_version != D.DOM0_INTERFACE_VERSION:
        return -errno.EACCES
    op = OPS.get(head.cmd)
    if op is None:
        return -errno.ENOSYS
    return op(hv, op_va)
