"""The domain builder: what Xen 2.0's construct_dom0 (and xc_linux_build for other
domains) does, run by the machine process before the domain's PCPU first runs it.

Start-of-day virtual layout, from the image's VIRT_BASE (xen.h comment):
  kernel image | pfn->mfn list | bootstrap page tables | start_info | stack
mapped linearly to pseudo-physical frames 0.. of the domain; the region is
rounded up to 4 MiB and padded by at least 512 KiB. Page-table frames are mapped
read-only, the L2 is pinned and becomes the domain's base pointer. The guest starts
in ring 1 at the image's entry with ESI = start_info, ESP = top of the stack,
and events masked.

Domain-0 also gets its privcmd window (smpxen/control/privcmd.py): PRIVCMD_PAGES
pages of address space at PRIVCMD_VA (the last guest L2 slot below the hypervisor,
0xFBC00000), mapped by one more L1. The first PRIVCMD_ARG_PAGES of them are the
last pages of its memory, mapped writable: where the machine, playing Domain-0's
user space, puts the arguments of the hypercalls it makes as Domain-0; the rest are
left unmapped, for the frames of other domains user space maps there. Those pages
and the L1 are left out of start_info.nr_pages and the pfn->mfn list, so the kernel
never takes them for its own."""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from smpxen.guests.image import KernelImage
from smpxen.mm.memory import MM
from smpxen.sched.flags import DFM_CONSTRUCTED, DFM_PRIVILEGED
from smpxen.shm.domains import DS_RUNNING, DomainInfo
from smpxen.shm.frametable import FF_XEN_HEAP, OWNER_XEN, PGT_l2_page_table, OutOfFrames
from smpxen.xen import arch_x86_32 as A
from smpxen.xen.structs import SharedInfo, StartInfo
from smpxen.xen.xen import (MAX_CMDLINE, SIF_INITDOMAIN, SIF_PRIVILEGED,
                            VMASST_TYPE_writable_pagetables)

PAGE = A.PAGE_SIZE
FOUR_MB = 1 << 22
L1_PROT = A._PAGE_PRESENT | A._PAGE_RW | A._PAGE_ACCESSED | A._PAGE_USER
L2_PROT = A._PAGE_PRESENT | A._PAGE_RW | A._PAGE_ACCESSED | A._PAGE_DIRTY | A._PAGE_USER
# Frames a domain takes from the free pool besides its memory: its shared_info and
# the PERDOMAIN L1 (the config loader counts them so a config that loads can build).
DOMAIN_EXTRA_FRAMES = 2
# Domain-0's privcmd window: its virtual address, its size in pages, the pages of it
# backed by Domain-0's own memory (see above).
PRIVCMD_VA = 0xFBC00000
PRIVCMD_PAGES = 128
PRIVCMD_ARG_PAGES = 64
PRIVCMD_FRAMES = PRIVCMD_ARG_PAGES + 1      # what Domain-0 gives up: those pages and the L1


def visible_pages(memory_bytes: int, privileged: bool) -> int:
    """The pages a domain's kernel is told of (start_info.nr_pages): all of them,
    but for Domain-0's privcmd window."""
    return memory_bytes // PAGE - (PRIVCMD_FRAMES if privileged else 0)


class BuildError(Exception):
    pass


@dataclass
class DomainRequest:
    domid: int
    name: str
    image: KernelImage
    memory_bytes: int
    processor: int
    cmdline: str
    privileged: bool


def _round_up(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def plan_layout(image: KernelImage, nr_pages: int) -> dict:
    """Virtual addresses of each piece of the bootstrap region (Xen's iteration:
    grow the number of L1 frames until they cover the whole region)."""
    v_start = image.virt_base
    v_kernel_end = _round_up(image.vend, PAGE)
    v_mfn_list = v_kernel_end
    v_mfn_list_end = _round_up(v_mfn_list + nr_pages * 4, PAGE)
    nr_l1 = 1
    while True:
        v_pt = v_mfn_list_end
        v_pt_end = v_pt + (1 + nr_l1) * PAGE
        v_start_info = v_pt_end
        v_stack = v_start_info + PAGE
        v_stack_end = v_stack + PAGE
        v_end = _round_up(v_stack_end + (512 << 10), FOUR_MB)
        needed = (v_end - (v_start & ~(FOUR_MB - 1))) // FOUR_MB
        if needed <= nr_l1:
            break
        nr_l1 = needed
    return dict(v_start=v_start, v_mfn_list=v_mfn_list, v_pt=v_pt, nr_l1=nr_l1,
                v_start_info=v_start_info, v_stack=v_stack, v_stack_end=v_stack_end,
                v_end=v_end, region_pages=(v_stack_end - v_start) // PAGE)


def check_fits(image: KernelImage, memory_bytes: int, privileged: bool = False) -> dict:
    """The bootstrap layout of `image` in a domain of `memory_bytes`; BuildError if it
    does not fit (the machine asks before it creates anything)."""
    if image.virt_base & (PAGE - 1) or image.virt_base >= A.HYPERVISOR_VIRT_START:
        raise BuildError(f"{image.name}: bad VIRT_BASE {image.virt_base:#x}")
    nr_pages = visible_pages(memory_bytes, privileged)
    plan = plan_layout(image, max(nr_pages, 1))
    if plan["v_end"] > A.HYPERVISOR_VIRT_START:
        raise BuildError(f"{image.name}: bootstrap region {image.virt_base:#x}..{plan['v_end']:#x} "
                         f"would reach the hypervisor area at {A.HYPERVISOR_VIRT_START:#x}")
    if plan["region_pages"] > nr_pages:
        window = f" and Domain-0's {PRIVCMD_FRAMES * 4} KiB privcmd window" if privileged else ""
        raise BuildError(
            f"{image.name}: the domain's {memory_bytes >> 10} KiB is too small for it (its "
            f"bootstrap region, image to boot stack, needs {plan['region_pages'] * 4} KiB{window})")
    if privileged and plan["v_end"] > PRIVCMD_VA:
        raise BuildError(f"{image.name}: VIRT_BASE {image.virt_base:#x} leaves no room for "
                         f"Domain-0's privcmd window at {PRIVCMD_VA:#x}")
    return plan


def bootstrap_pages(image: KernelImage, plan: dict, mfns: list[int], visible: int, shared_mfn: int,
                    flags: int, cmdline: str, ctrl_evtchn: int = 0) -> tuple[dict[int, bytes], int]:
    """The contents of a domain's start-of-day frames, as {pfn: page}, and the pfn
    of its L2: the kernel image, the pfn->mfn list of its first `visible` frames,
    the bootstrap page tables (page-table frames mapped read-only; with more frames
    than `visible`, the last of them is the L1 mapping the privcmd window, the ones
    before it the window), start_info (with the domain controller's port, if it has
    one: smpxen/domain/ctrl_channel.py). Frames not named are zero. The boot-time
    builder writes these into RAM; Domain-0's tools (smpxen/control/build.py) into
    the frames of a domain they created, through hypercalls."""
    pages: dict[int, bytearray] = {}
    v_start = plan["v_start"]

    def write(va: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            cur = va + off
            n = min(PAGE - (cur & (PAGE - 1)), len(data) - off)
            page = pages.setdefault((cur - v_start) // PAGE, bytearray(PAGE))
            page[cur & (PAGE - 1):(cur & (PAGE - 1)) + n] = data[off:off + n]
            off += n

    def mfn_of(va: int) -> int:
        return mfns[(va - v_start) // PAGE]

    for seg in image.segments:
        write(seg.vaddr, seg.data)
    write(plan["v_mfn_list"], struct.pack(f"<{visible}I", *mfns[:visible]))

    l2_va = plan["v_pt"]
    l1_vas = [l2_va + (i + 1) * PAGE for i in range(plan["nr_l1"])]
    pt_mfns = {mfn_of(l2_va), *map(mfn_of, l1_vas)}
    l2 = [0] * 1024
    base_slot = v_start >> 22
    l1_tables = {}
    for i, l1_va in enumerate(l1_vas):
        l2[base_slot + i] = (mfn_of(l1_va) << 12) | L2_PROT
        l1_tables[base_slot + i] = (l1_va, [0] * 1024)
    for va in range(v_start, plan["v_stack_end"], PAGE):
        mfn = mfn_of(va)
        prot = L1_PROT & ~A._PAGE_RW if mfn in pt_mfns else L1_PROT
        l1_tables[va >> 22][1][(va >> 12) & 1023] = (mfn << 12) | prot
    if len(mfns) > visible:                 # Domain-0's privcmd window, in its last L1 frame
        l2[PRIVCMD_VA >> 22] = (mfns[-1] << 12) | L2_PROT
        window = [(mfn << 12) | L1_PROT for mfn in mfns[visible:visible + PRIVCMD_ARG_PAGES]]
        pages[len(mfns) - 1] = bytearray(struct.pack("<1024I", *window, *[0] * (1024 - len(window))))
    write(l2_va, struct.pack("<1024I", *l2))
    for l1_va, table in l1_tables.values():
        write(l1_va, struct.pack("<1024I", *table))

    si = StartInfo()
    si.nr_pages = visible
    si.shared_info = shared_mfn << 12
    si.flags = flags
    si.domain_controller_evtchn = ctrl_evtchn
    si.pt_base = l2_va
    si.nr_pt_frames = 1 + plan["nr_l1"]
    si.mfn_list = plan["v_mfn_list"]
    cmd = cmdline.encode()[:MAX_CMDLINE - 1]
    ctypes.memmove(si.cmd_line, cmd, len(cmd))
    write(plan["v_start_info"], bytes(si))
    return {pfn: bytes(p) for pfn, p in pages.items()}, (l2_va - v_start) // PAGE


class DomainBuilder:
    def __init__(self, ram, layout, frametable, domtable):
        self.ram = ram
        self.layout = layout
        self.ft = frametable
        self.dt = domtable
        self.privcmd_l1: dict[int, int] = {}     # domid -> the L1 mapping its privcmd window

    def build(self, req: DomainRequest) -> DomainInfo:
        image = req.image
        nr_pages = req.memory_bytes // PAGE
        visible = visible_pages(req.memory_bytes, req.privileged)
        try:
            plan = check_fits(image, req.memory_bytes, req.privileged)
        except BuildError as e:
            raise BuildError(f"domain {req.name}: {e}") from None
        try:
            mfns = self.ft.alloc(req.domid, nr_pages)
            shared_mfn = self.ft.alloc(req.domid, 1, flags=FF_XEN_HEAP)[0]
            perdomain_mfn = self.ft.alloc(OWNER_XEN, 1)[0]
        except OutOfFrames as e:
            raise BuildError(f"domain {req.name}: not enough free machine memory ({e})") from None
        for mfn in mfns + [shared_mfn, perdomain_mfn]:
            self.ram.zero_frame(mfn)
        d = self.dt.allocate(req.domid)
        d.perdomain_pt_mfn = perdomain_mfn
        d.processor = req.processor
        d.tot_pages = nr_pages
        d.max_pages = nr_pages

        flags = (SIF_PRIVILEGED | SIF_INITDOMAIN) if req.privileged else 0
        pages, l2_pfn = bootstrap_pages(image, plan, mfns, visible, shared_mfn, flags, req.cmdline)
        for pfn, page in pages.items():
            self.ram.write(mfns[pfn] << 12, page)
        for pfn, mfn in enumerate(mfns):        # machine->phys entries, window included
            self.ft.m2p[mfn] = pfn
        l2_mfn = mfns[l2_pfn]
        if req.privileged:
            self.privcmd_l1[req.domid] = mfns[-1]
        # What Xen's builder does: validate and pin the L2 (which validates every
        # L1 and types every frame they map), then take the base-pointer reference.
        mm = MM(self.ft, self.ram, self.dt)
        if not (mm.pin_table(l2_mfn, PGT_l2_page_table, req.domid)
                and mm.get_page_and_type(l2_mfn, req.domid, PGT_l2_page_table)):
            raise BuildError(f"domain {req.name}: bootstrap page tables failed validation")

        # shared_info: events masked at start of day.
        shared = SharedInfo.from_buffer(self.ram.mem, shared_mfn << 12)
        shared.vcpu_data[0].evtchn_upcall_mask = 1
        del shared

        d.name = req.name.encode()[:31]
        d.privileged = 1 if req.privileged else 0
        d.shared_info_mfn = shared_mfn
        d.pt_base_mfn = l2_mfn
        d.entry_eip = image.entry
        d.entry_esp = plan["v_stack_end"]
        d.start_info_va = plan["v_start_info"]
        if image.writable_pagetables:
            d.vm_assist |= 1 << VMASST_TYPE_writable_pagetables
        d.flags = DFM_CONSTRUCTED | (DFM_PRIVILEGED if req.privileged else 0)
        d.state = DS_RUNNING
        return d
