"""Domain control on a PCPU (the dom0_op back end): pause, scheduler parameters,
pinning. Each operation runs on the PCPU that hosts the domain; `domain_call`
routes it there (a remote call, smpxen/pcpu/mailbox.py, synchronous when a
result is needed). Moving a
domain is never done from inside a hook: requests are queued and the PCPU loop
carries them out between slices."""
from __future__ import annotations

from smpxen.pcpu import schedule, vcpuctx
from smpxen.sched.flags import DFM_CONSTRUCTED, DFM_CTRLPAUSE
from smpxen.hv.vm_assist import vm_assist
from smpxen.sched.bvt import BVTAdjdom
from smpxen.xen.dom0_ops import SCHED_INFO_GET
from smpxen.sched.core import Action
from smpxen.xen import errno
from smpxen.xen.trace import TRC_SCHED_ADJDOM, TRC_SCHED_CTL, TRC_SCHED_SLEEP, TRC_SCHED_WAKE


def _resched(pcpu, r) -> None:
    if r.action == Action.NOW and pcpu.current is not None:
        schedule.request_resched(pcpu)


def dom_pause(pcpu, domid: int, pause: bool) -> int:
    v = pcpu.vcpus.get(domid)
    if v is None:
        return -errno.ESRCH
    if v.ended:
        # Shut down or crashed, not yet destroyed: Xen still sets or clears
        # DF_CTRLPAUSE (GETDOMAININFO shows it); the domain never runs again, and the
        # scheduler has let go of it, so the flag lives in its record alone.
        v.info.flags = v.info.flags | DFM_CTRLPAUSE if pause else v.info.flags & ~DFM_CTRLPAUSE
        return 0
    if not pause and not pcpu.vcpus[domid].info.flags & DFM_CONSTRUCTED:
        return -errno.EINVAL              # Xen: a domain runs only once BUILDDOMAIN made it
    now = pcpu.clock.now()
    pcpu.trace.trace(TRC_SCHED_SLEEP if pause else TRC_SCHED_WAKE, domid)
    r = pcpu.sched.ctrl_pause(domid, now) if pause else pcpu.sched.ctrl_unpause(domid, now)
    _resched(pcpu, r)
    schedule.mirror_domain_state(pcpu)
    return 0


def dom_adjust(pcpu, domid: int, direction: int, params):
    if not pcpu.sched.has_domain(domid):
        return -errno.ESRCH
    pcpu.trace.trace(TRC_SCHED_ADJDOM, domid)
    if direction == SCHED_INFO_GET:
        got = pcpu.sched.adjdom(domid, direction)
        if isinstance(got, int):
            return got
        return [got.mcu_adv, got.warpback, got.warpvalue, got.warpl, got.warpu]
    mcu, warpback, warpvalue, warpl, warpu = params
    return pcpu.sched.adjdom(domid, direction, BVTAdjdom(mcu, warpback, warpvalue, warpl, warpu))


def sched_ctl_local(pcpu, direction: int, ctx_allow: int) -> int:
    pcpu.trace.trace(TRC_SCHED_CTL)
    rc, value = pcpu.sched.sched_ctl(direction, ctx_allow)
    return value


def dom_iopl(pcpu, domid: int, iopl: int) -> int:
    """DOM0_IOPL on the domain's PCPU."""
    v = pcpu.vcpus.get(domid)
    if v is None:
        return -errno.ESRCH
    vcpuctx.set_iopl(pcpu, v, iopl)
    return 0


def dom_vm_assist(pcpu, domid: int, cmd: int, type_: int) -> int:
    """DOM0_SETDOMAINVMASSIST on the domain's PCPU (vm_assist of common/domain.c,
    for another domain); the vm_assist bits are read there."""
    v = pcpu.vcpus.get(domid)
    if v is None:
        return -errno.ESRCH
    return vm_assist(v.info, cmd, type_)


def migrate_request(pcpu, domid: int, target: int) -> int:
    pcpu.pending_migrations.append((domid, target))
    return 0


def domain_call(pcpu, domid: int, function: str, args=(), wait: bool = True):
    """Run remote function `function`(pcpu, domid, *args) on the PCPU hosting domid
    (smpxen/pcpu/mailbox.py, REMOTE_FUNCTIONS)."""
    info = pcpu.domains.find(domid)
    if info is None:
        return -errno.ESRCH
    if wait:
        return pcpu.mailbox.call(info.processor, function, [domid, *args])
    pcpu.mailbox.post(info.processor, function, [domid, *args])
    return 0


def broadcast(pcpu, function: str, args=()) -> None:
    """Run a remote function on every other PCPU, without waiting."""
    for cpu in range(pcpu.nr_pcpus):
        if cpu != pcpu.index:
            pcpu.mailbox.post(cpu, function, args)
