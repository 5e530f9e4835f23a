"""What Xen 2.0's libxc offers the tools (tools/libxc/xc_domain.c, xc_misc.c,
xc_bvtsched.c, xc_private.c), over Domain-0's privcmd (smpxen/control/privcmd.py):
dom0_op and mmu_update wrappers, each a hypercall made as Domain-0. A negative
result raises XcError, one line for the user naming what failed and the errno."""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from smpxen.control.endpoint import XmError
from smpxen.control.privcmd import MAP_BASE, MAP_PAGES, PAGE, Request
from smpxen.sched.bvt import SCHED_INFO_GET, SCHED_INFO_PUT
from smpxen.xen import dom0_ops as D, errno
from smpxen.xen.arch_x86_32 import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.structs import FullExecutionContext
from smpxen.xen.xen import (MMU_EXTENDED_COMMAND, MMUEXT_SET_FOREIGNDOM, MMUEXT_TLB_FLUSH,
                            MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE)

OP_SIZE = ctypes.sizeof(D.Dom0Op)
CTX_SIZE = ctypes.sizeof(FullExecutionContext)
MAP_PROT = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY
MMU_BATCH = 4096                       # mmu_update requests per hypercall (32 KiB of list)
_mmu_req = struct.Struct("<II")
ERRNO_TEXT = {errno.EPERM: "not permitted", errno.ESRCH: "no such domain", errno.E2BIG: "too many",
              errno.EAGAIN: "try again", errno.ENOMEM: "out of memory", errno.EACCES: "wrong interface version",
              errno.EFAULT: "bad address", errno.EBUSY: "busy", errno.EINVAL: "invalid argument",
              errno.ENOSPC: "no space", errno.ENOSYS: "not implemented"}


class XcError(XmError):
    def __init__(self, what: str, rc: int):
        super().__init__(f"{what}: {ERRNO_TEXT.get(-rc, 'error')} ({errno.errname(rc)})")
        self.rc = rc


@dataclass
class DomainInfo:
    """DOM0_GETDOMAININFO's answer for one domain."""
    domid: int
    flags: int
    tot_pages: int
    max_pages: int
    shared_info_frame: int
    cpu_time_ns: int

    @property
    def cpu(self) -> int:
        return (self.flags >> D.DOMFLAGS_CPUSHIFT) & D.DOMFLAGS_CPUMASK

    @property
    def state(self) -> str:
        """xend's state string: r(unning) b(locked) p(aused) s(hut down) c(rashed),
        '-' for each that does not hold, and d while dying."""
        f = self.flags
        s = "".join(ch if f & bit else "-" for ch, bit in (
            ("r", D.DOMFLAGS_RUNNING), ("b", D.DOMFLAGS_BLOCKED), ("p", D.DOMFLAGS_PAUSED),
            ("s", D.DOMFLAGS_SHUTDOWN), ("c", D.DOMFLAGS_CRASHED)))
        return s + ("d" if f & D.DOMFLAGS_DYING else "")

    @property
    def shutdown_code(self) -> int:
        return (self.flags >> D.DOMFLAGS_SHUTDOWNSHIFT) & D.DOMFLAGS_SHUTDOWNMASK


class Xc:
    """libxc for one control session. `privcmd_l1` is the machine frame of the L1
    that maps Domain-0's privcmd window (the machine built Domain-0)."""

    def __init__(self, privcmd, privcmd_l1: int | None):
        self.pc = privcmd
        self.privcmd_l1 = privcmd_l1

    # ---- dom0_op --------------------------------------------------------------------
    @staticmethod
    def add_op(req: Request, cmd: int, union) -> tuple:
        """dom0_op(cmd) with `union` as a step of `req`; decode it with `outcome`."""
        op = D.Dom0Op(cmd=cmd, interface_version=D.DOM0_INTERFACE_VERSION)
        ctypes.memmove(op.u, bytes(union), ctypes.sizeof(union))
        va = req.put(bytes(op))
        return req.call(Hypercall.dom0_op, va), req.read(va, OP_SIZE), type(union)

    @staticmethod
    def outcome(res: list, handle: tuple, what: str):
        """The union a dom0_op step left, or XcError (None if the request stopped
        before the step)."""
        i, j, kind = handle
        if i >= len(res):
            return None
        if res[i] < 0:
            raise XcError(what, res[i])
        return kind.from_buffer_copy(res[j][D.UNION_OFFSET:D.UNION_OFFSET + ctypes.sizeof(kind)])

    def op(self, cmd: int, union, what: str, req: Request | None = None, after=()):
        """dom0_op(cmd) with `union`; returns (the union as the hypervisor left it,
        the results of `after`: (va, nbytes) reads made in the same request)."""
        req = req or Request()
        handle = self.add_op(req, cmd, union)
        reads = [req.read(a, n) for a, n in after]
        res = self.pc.run(req)
        return self.outcome(res, handle, what), [res[k] for k in reads]

    def physinfo(self) -> D.PhysInfo:
        return self.op(D.DOM0_PHYSINFO, D.PhysInfo(), "physinfo")[0]

    def sched_id(self) -> int:
        return self.op(D.DOM0_SCHED_ID, D.SchedId(), "sched_id")[0].sched_id

    def xen_version(self) -> int:
        req = Request()
        i = req.call(Hypercall.xen_version, 0)
        return self.pc.run(req)[i]

    def domain_info(self, domid: int) -> DomainInfo | None:
        """The domain `domid`, or None if there is none."""
        got = self.next_domain(domid)
        return got if got is not None and got.domid == domid else None

    def next_domain(self, first: int) -> DomainInfo | None:
        """The live domain with the lowest id >= first (GETDOMAININFO's walk)."""
        try:
            g = self.op(D.DOM0_GETDOMAININFO, D.GetDomainInfo(domain=first), "getdomaininfo")[0]
        except XcError as e:
            if e.rc == -errno.ESRCH:
                return None
            raise
        return DomainInfo(g.domain, g.flags, g.tot_pages, g.max_pages, g.shared_info_frame, g.cpu_time)

    def domains(self) -> list[DomainInfo]:
        out, first = [], 0
        while (d := self.next_domain(first)) is not None:
            out.append(d)
            first = d.domid + 1
        return out

    def domain_context(self, domid: int) -> FullExecutionContext:
        req = Request()
        ctxt = req.alloc(CTX_SIZE)
        _g, (raw,) = self.op(D.DOM0_GETDOMAININFO, D.GetDomainInfo(domain=domid, ctxt=ctxt),
                             f"domain {domid}: getdomaininfo", req, [(ctxt, CTX_SIZE)])
        return FullExecutionContext.from_buffer_copy(raw)

    def create(self, memory_kb: int, cpu: int = -1, domid: int = 0) -> int:
        c = D.CreateDomain(memory_kb=memory_kb, cpu=cpu & 0xFFFFFFFF, domain=domid)
        return self.op(D.DOM0_CREATEDOMAIN, c, "createdomain")[0].domain

    def destroy(self, domid: int) -> None:
        self.op(D.DOM0_DESTROYDOMAIN, D.DomainOnly(domain=domid), f"domain {domid}: destroy")

    def pause(self, domid: int) -> None:
        self.op(D.DOM0_PAUSEDOMAIN, D.DomainOnly(domain=domid), f"domain {domid}: pause")

    def unpause(self, domid: int) -> None:
        self.op(D.DOM0_UNPAUSEDOMAIN, D.DomainOnly(domain=domid), f"domain {domid}: unpause")

    def pincpu(self, domid: int, cpu: int) -> None:
        self.op(D.DOM0_PINCPUDOMAIN, D.PinCpuDomain(domain=domid, cpu=cpu), f"domain {domid}: pincpu")

    def bvt_get(self, domid: int) -> D.AdjustDom:
        a = D.AdjustDom(sched_id=D.SCHED_BVT, direction=SCHED_INFO_GET, domain=domid)
        return self.op(D.DOM0_ADJUSTDOM, a, f"domain {domid}: bvt")[0]

    def bvt_set(self, domid: int, mcu_adv: int, warpback: int, warpvalue: int, warpl: int, warpu: int) -> None:
        a = D.AdjustDom(sched_id=D.SCHED_BVT, direction=SCHED_INFO_PUT, domain=domid, mcu_adv=mcu_adv,
                        warpback=warpback, warpvalue=warpvalue, warpl=warpl, warpu=warpu)
        self.op(D.DOM0_ADJUSTDOM, a, f"domain {domid}: bvt")

    def ctx_allow(self, value: int | None = None) -> int:
        """The BVT context-switch allowance (ns): set it if value is given."""
        c = D.SchedCtl(sched_id=D.SCHED_BVT, direction=SCHED_INFO_GET if value is None else SCHED_INFO_PUT,
                       ctx_allow=value or 0)
        return self.op(D.DOM0_SCHEDCTL, c, "bvt_ctxallow")[0].ctx_allow

    def setmaxmem(self, domid: int, max_kb: int) -> None:
        self.op(D.DOM0_SETDOMAINMAXMEM, D.SetDomainMem(domain=domid, memkb=max_kb), f"domain {domid}: maxmem")

    def vm_assist(self, domid: int, cmd: int, type_: int) -> None:
        self.op(D.DOM0_SETDOMAINVMASSIST, D.SetDomainVmAssist(domain=domid, cmd=cmd, type=type_),
                f"domain {domid}: vm_assist")

    def readconsole(self, count: int, clear: bool) -> bytes:
        req = Request()
        buf = req.alloc(count)
        r = D.ReadConsole(str=buf, count=count, cmd=D.CONSOLE_RING_CLEAR if clear else 0)
        op = D.Dom0Op(cmd=D.DOM0_READCONSOLE, interface_version=D.DOM0_INTERFACE_VERSION)
        ctypes.memmove(op.u, bytes(r), ctypes.sizeof(r))
        va = req.put(bytes(op))
        i = req.call(Hypercall.dom0_op, va)
        j = req.read(buf, count)
        res = self.pc.run(req)
        if res[i] < 0:
            raise XcError("readconsole", res[i])
        return res[j][:res[i]]

    def getmemlist(self, domid: int, max_pfns: int) -> list[int]:
        req = Request()
        buf = req.alloc(4 * max_pfns)
        g, (raw,) = self.op(D.DOM0_GETMEMLIST, D.GetMemList(domain=domid, max_pfns=max_pfns, buffer=buf),
                            f"domain {domid}: getmemlist", req, [(buf, 4 * max_pfns)])
        return list(struct.unpack_from(f"<{g.num_pfns}I", raw))

    def ops(self, calls, req: Request | None = None) -> list:
        """Several dom0_ops [(cmd, union, what), ...] in one request (after what `req`
        holds already), stopping at the first failure; their unions."""
        req = req or Request()
        handles = [(self.add_op(req, cmd, union), what) for cmd, union, what in calls]
        res = self.run_checked(req, "mmu_update", skip={h[0] for h, _w in handles})
        return [self.outcome(res, h, what) for h, what in handles]

    # ---- mmu_update with a foreign domain ------------------------------------------------
    def mmu_foreign(self, domid: int, requests: list[tuple[int, int]], what: str,
                    req: Request | None = None, run: bool = True) -> Request:
        """mmu_update of (ptr, val) requests acting for domain `domid`
        (MMUEXT_SET_FOREIGNDOM first in every batch), added to `req`."""
        req = req or Request()
        for start in range(0, len(requests), MMU_BATCH):
            chunk = [(MMU_EXTENDED_COMMAND, MMUEXT_SET_FOREIGNDOM | (domid << 16))] + \
                requests[start:start + MMU_BATCH]
            va = req.put(b"".join(_mmu_req.pack(p & 0xFFFFFFFF, v & 0xFFFFFFFF) for p, v in chunk))
            req.call(Hypercall.mmu_update, va, len(chunk), 0)
        if run:
            self.run_checked(req, what)
        return req

    def run_checked(self, req: Request, what: str, skip=frozenset()) -> list:
        """Run `req`; XcError(what) if one of its hypercalls (but those in `skip`,
        which the caller checks) failed."""
        res = self.pc.run(req)
        for i, (step, r) in enumerate(zip(req.steps, res)):
            if step[0] == "h" and r < 0 and i not in skip:
                raise XcError(what, r)
        return res

    def fill_frames(self, domid: int, pages: list[tuple[int, bytes]], what: str) -> None:
        """Write pages (machine frame, whole-page contents) of domain `domid`: map
        them into Domain-0's privcmd window with mmu_update as Domain-0 acting for
        `domid`, store, unmap (and flush Domain-0's TLB), a window's worth per
        request (xc_map_foreign_range + memcpy + munmap)."""
        if self.privcmd_l1 is None:
            raise XmError("Domain-0 has no privcmd window")
        l1 = self.privcmd_l1 << 12
        first_slot = (MAP_BASE >> 12) & 1023
        for start in range(0, len(pages), MAP_PAGES):
            chunk = pages[start:start + MAP_PAGES]
            ptes = [l1 + 4 * (first_slot + i) for i in range(len(chunk))]
            req = Request()
            maps = [(pte | MMU_NORMAL_PT_UPDATE, (mfn << 12) | MAP_PROT) for pte, (mfn, _d) in zip(ptes, chunk)]
            self.mmu_foreign(domid, maps, what, req, run=False)
            for i, (_mfn, data) in enumerate(chunk):
                req.store(MAP_BASE + i * PAGE, data)
            unmaps = [(pte | MMU_NORMAL_PT_UPDATE, 0) for pte in ptes] + \
                [(MMU_EXTENDED_COMMAND, MMUEXT_TLB_FLUSH)]
            va = req.put(b"".join(_mmu_req.pack(p, v) for p, v in unmaps))
            req.call(Hypercall.mmu_update, va, len(unmaps), 0)
            self.run_checked(req, what)

    def machphys(self, domid: int, mfns: list[int], what: str) -> None:
        """MMU_MACHPHYS_UPDATE: frame mfns[pfn] is the domain's pfn."""
        self.mmu_foreign(domid, [((mfn << 12) | MMU_MACHPHYS_UPDATE, pfn) for pfn, mfn in enumerate(mfns)],
                         what)
