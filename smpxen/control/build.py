"""Building a domain the way Xen 2.0's tools do (tools/libxc/xc_linux_build.c), with
Domain-0's hypercalls only (smpxen/control/xc.py):

  1. DOM0_CREATEDOMAIN: the hypervisor makes an empty, paused domain with its memory;
  2. DOM0_SETDOMAINVMASSIST (PT_MODE_WRITABLE kernels), DOM0_GETMEMLIST (its frames),
     DOM0_GETDOMAININFO (its shared_info frame), in one privcmd request;
  3. its start-of-day frames - kernel image, pfn->mfn list, bootstrap page tables,
     start_info - filled through mappings in Domain-0's privcmd window
     (mmu_update acting for the new domain), and its shared_info with events masked;
  4. MMU_MACHPHYS_UPDATE for every frame, MMUEXT_PIN_L2_TABLE of its page directory
     (the hypervisor validates the whole bootstrap address space here), then
     DOM0_BUILDDOMAIN with the full execution context (Xen 2.0's new_thread: ring 1,
     flat segments, ESI = start_info), BVT parameters, DOM0_UNPAUSEDOMAIN: one request.

The layout and the frames' contents are the boot-time builder's, computed by the
same code (smpxen/domain/builder.py bootstrap_pages), so a domain built here starts
exactly as one built at boot. Whatever fails, the half-built domain is destroyed."""
from __future__ import annotations

from smpxen.control.endpoint import XmError
from smpxen.control.privcmd import ARG_BYTES, Request
from smpxen.control.xc import Xc, XcError
from smpxen.domain.builder import BuildError, bootstrap_pages, check_fits
from smpxen.guests.image import KernelImage
from smpxen.pcpu.schedule import INITIAL_EFLAGS
from smpxen.sched.bvt import MCU_ADVANCE, SCHED_INFO_PUT, WARPL_DEFAULT_MS, WARPU_DEFAULT_MS
from smpxen.xen import arch_x86_32 as A, dom0_ops as D
from smpxen.xen.structs import FullExecutionContext, SharedInfo
from smpxen.xen.xen import (MMU_EXTENDED_COMMAND, MMU_MACHPHYS_UPDATE, MMUEXT_PIN_L2_TABLE,
                            VMASST_CMD_enable, VMASST_TYPE_writable_pagetables)

PAGE = 4096
MAX_PAGES = (ARG_BYTES - 2 * PAGE) // 4     # DOM0_GETMEMLIST's list must fit the argument area


def execution_context(image: KernelImage, plan: dict, l2_mfn: int) -> FullExecutionContext:
    """What xc_linux_build hands DOM0_BUILDDOMAIN: ring-1 flat segments, the entry
    point, the boot stack, ESI = start_info, every trap vector unset, no callbacks."""
    c = FullExecutionContext()
    cpu = c.cpu_ctxt
    cpu.ds = cpu.es = cpu.fs = cpu.gs = cpu.ss = A.FLAT_RING1_DS
    cpu.cs = A.FLAT_RING1_CS
    cpu.eip = image.entry
    cpu.esp = plan["v_stack_end"]
    cpu.esi = plan["v_start_info"]
    cpu.eflags = INITIAL_EFLAGS
    for vector in range(256):
        c.trap_ctxt[vector].vector = vector
        c.trap_ctxt[vector].cs = A.FLAT_GUESTOS_CS
    c.guestos_ss, c.guestos_esp = A.FLAT_GUESTOS_DS, plan["v_stack_end"]
    c.pt_base = l2_mfn << 12
    c.event_callback_cs = c.failsafe_callback_cs = A.FLAT_GUESTOS_CS
    return c


def bvt_adjust(domid: int, bvt: dict) -> D.AdjustDom:
    """DOM0_ADJUSTDOM PUT of a config's `bvt` table (defaults as the boot path's)."""
    return D.AdjustDom(sched_id=D.SCHED_BVT, direction=SCHED_INFO_PUT, domain=domid,
                       mcu_adv=bvt.get("mcu_advance", MCU_ADVANCE), warpback=bvt.get("warpback", 0),
                       warpvalue=bvt.get("warp_value", 0), warpl=bvt.get("warpl_ms", WARPL_DEFAULT_MS),
                       warpu=bvt.get("warpu_ms", WARPU_DEFAULT_MS))


def build_domain(xc: Xc, image: KernelImage, memory_bytes: int, cmdline_of, cpu: int = -1,
                 bvt: dict | None = None, named=None, unpause: bool = True, controller=None) -> int:
    """Create, build and (by default) start a domain; returns its id.
    cmdline_of(domid) gives its command line; named(domid), if given, is called as
    soon as the id is known (the machine records the name before the domain runs).
    With controller(domid, port, remote_port), the domain gets a control interface
    as xend gave it one (smpxen/control/ctrl_verbs.py bind_controller): the port
    goes in its start_info, and controller() is called before the domain runs."""
    nr_pages = memory_bytes // PAGE
    if nr_pages > MAX_PAGES:
        raise XmError(f"{memory_bytes >> 20} MiB is more than the {MAX_PAGES * PAGE >> 20} MiB "
                      "a domain built by Domain-0's tools may have (its frame list must fit "
                      "Domain-0's privcmd window)")
    try:
        plan = check_fits(image, memory_bytes)
    except BuildError as e:
        raise XmError(str(e)) from None
    domid = xc.create(memory_bytes >> 10, cpu)
    try:
        if named is not None:
            named(domid)
        port = 0
        if controller is not None:          # attached at once: a failure below closes both ends
            from smpxen.control.ctrl_verbs import bind_controller
            remote, port = bind_controller(xc, domid)
            controller(domid, port, remote)
        mfns, l2_mfn = _fill(xc, domid, image, plan, nr_pages, cmdline_of(domid), port)
        _finish(xc, domid, image, plan, mfns, l2_mfn, bvt, unpause)
    except BaseException:
        try:
            xc.destroy(domid)
        except XmError:
            pass                          # the machine is stopping, or it is gone already
        raise
    return domid


def _fill(xc: Xc, domid: int, image: KernelImage, plan: dict, nr_pages: int,
          cmdline: str, ctrl_evtchn: int) -> tuple[list[int], int]:
    """Steps 2 and 3; returns the domain's frames and its page directory's."""
    req = Request()
    calls = []
    if image.writable_pagetables:
        calls.append((D.DOM0_SETDOMAINVMASSIST, D.SetDomainVmAssist(
            domain=domid, cmd=VMASST_CMD_enable, type=VMASST_TYPE_writable_pagetables), "vm_assist"))
    buf = req.alloc(4 * nr_pages)
    calls += [(D.DOM0_GETMEMLIST, D.GetMemList(domain=domid, max_pfns=nr_pages, buffer=buf), "getmemlist"),
              (D.DOM0_GETDOMAININFO, D.GetDomainInfo(domain=domid), "getdomaininfo")]
    handles = [(xc.add_op(req, cmd, u), what) for cmd, u, what in calls]
    list_read = req.read(buf, 4 * nr_pages)
    res = xc.run_checked(req, f"domain {domid}: build", skip={h[0] for h, _w in handles})
    outs = [xc.outcome(res, h, f"domain {domid}: {what}") for h, what in handles]
    memlist, info = outs[-2], outs[-1]
    if memlist.num_pfns != nr_pages or info.domain != domid:
        raise XmError(f"domain {domid}: build: the hypervisor gave {memlist.num_pfns} of {nr_pages} frames")
    mfns = list(memoryview(res[list_read]).cast("I")[:nr_pages])
    pages, l2_pfn = bootstrap_pages(image, plan, mfns, nr_pages, info.shared_info_frame, 0, cmdline,
                                    ctrl_evtchn)
    shared = SharedInfo()
    shared.vcpu_data[0].evtchn_upcall_mask = 1           # events masked at start of day
    fill = [(mfns[pfn], page) for pfn, page in sorted(pages.items())]
    fill.append((info.shared_info_frame, bytes(shared) + bytes(PAGE - len(bytes(shared)))))
    xc.fill_frames(domid, fill, f"domain {domid}: filling its frames")
    return mfns, mfns[l2_pfn]


def _finish(xc: Xc, domid: int, image: KernelImage, plan: dict, mfns: list[int], l2_mfn: int,
            bvt: dict | None, unpause: bool) -> None:
    """Step 4, one privcmd request."""
    req = Request()
    xc.mmu_foreign(domid, [((mfn << 12) | MMU_MACHPHYS_UPDATE, pfn) for pfn, mfn in enumerate(mfns)]
                   + [((l2_mfn << 12) | MMU_EXTENDED_COMMAND, MMUEXT_PIN_L2_TABLE)],
                   f"domain {domid}: page tables", req, run=False)
    ctxt = execution_context(image, plan, l2_mfn)
    calls = [(D.DOM0_BUILDDOMAIN, D.BuildDomain(domain=domid, ctxt=req.put(bytes(ctxt))), "builddomain")]
    if bvt:
        calls.append((D.DOM0_ADJUSTDOM, bvt_adjust(domid, bvt), "bvt"))
    if unpause:
        calls.append((D.DOM0_UNPAUSEDOMAIN, D.DomainOnly(domain=domid), "unpause"))
    try:
        xc.ops([(cmd, u, f"domain {domid}: {what}") for cmd, u, what in calls], req)
    except XcError as e:
        if "mmu_update" in str(e):
            raise XcError(f"domain {domid}: its bootstrap page tables were refused", e.rc) from None
        raise
