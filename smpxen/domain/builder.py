"""The domain builder: what Xen 2.0's construct_dom0 (and xc_linux_build for other
domains) does, run by the machine process before the domain's PCPU first runs it.

Start-of-day virtual layout, from the image's VIRT_BASE (xen.h comment):
  kernel image | pfn->mfn list | bootstrap page tables | start_info | stack
mapped linearly to pseudo-physical frames 0.. of the domain; the region is
rounded up to 4 MiB and padded by at least 512 KiB. Page-table frames are mapped
read-only, the L2 is pinned and becomes the domain's base pointer. The guest starts
in ring 1 at the image's entry with ESI = start_info, ESP = top of the stack,
and events masked."""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from smpxen.guests.image import KernelImage
from smpxen.mm.memory import MM
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


def check_fits(image: KernelImage, memory_bytes: int) -> dict:
    """The bootstrap layout of `image` in a domain of `memory_bytes`; BuildError if it
    does not fit (the machine asks before it creates anything)."""
    if image.virt_base & (PAGE - 1) or image.virt_base >= A.HYPERVISOR_VIRT_START:
        raise BuildError(f"{image.name}: bad VIRT_BASE {image.virt_base:#x}")
    nr_pages = memory_bytes // PAGE
    plan = plan_layout(image, nr_pages)
    if plan["v_end"] > A.HYPERVISOR_VIRT_START:
        raise BuildError(f"{image.name}: bootstrap region {image.virt_base:#x}..{plan['v_end']:#x} "
                         f"would reach the hypervisor area at {A.HYPERVISOR_VIRT_START:#x}")
    if plan["region_pages"] > nr_pages:
        raise BuildError(
            f"{image.name}: the domain's {memory_bytes >> 10} KiB is too small for it (its "
            f"bootstrap region, image to boot stack, needs {plan['region_pages'] * 4} KiB)")
    return plan


class DomainBuilder:
    def __init__(self, ram, layout, frametable, domtable):
        self.ram = ram
        self.layout = layout
        self.ft = frametable
        self.dt = domtable

    def build(self, req: DomainRequest) -> DomainInfo:
        image = req.image
        nr_pages = req.memory_bytes // PAGE
        try:
            plan = check_fits(image, req.memory_bytes)
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

        v_start = plan["v_start"]
        pfn_of = lambda va: (va - v_start) // PAGE       # noqa: E731 (bootstrap region is linear)
        mfn_of = lambda va: mfns[pfn_of(va)]             # noqa: E731

        # Kernel image.
        for seg in image.segments:
            self._write_virt(seg.vaddr, seg.data, mfn_of)

        # pfn->mfn list, and the machine->phys table entries.
        self._write_virt(plan["v_mfn_list"], struct.pack(f"<{nr_pages}I", *mfns), mfn_of)
        for pfn, mfn in enumerate(mfns):
            self.ft.m2p[mfn] = pfn

        # Bootstrap page tables.
        l2_va = plan["v_pt"]
        l2_mfn = mfn_of(l2_va)
        l1_mfns = [mfn_of(l2_va + (i + 1) * PAGE) for i in range(plan["nr_l1"])]
        pt_mfns = {l2_mfn, *l1_mfns}
        l2 = [0] * 1024
        base_slot = v_start >> 22
        l1_tables = {}
        for i, l1_mfn in enumerate(l1_mfns):
            l2[base_slot + i] = (l1_mfn << 12) | L2_PROT
            l1_tables[base_slot + i] = [0] * 1024
        for va in range(v_start, plan["v_stack_end"], PAGE):
            mfn = mfn_of(va)
            prot = L1_PROT & ~A._PAGE_RW if mfn in pt_mfns else L1_PROT
            l1_tables[va >> 22][(va >> 12) & 1023] = (mfn << 12) | prot
        self.ram.write(l2_mfn << 12, struct.pack("<1024I", *l2))
        for slot, table in l1_tables.items():
            self.ram.write(l2[slot] & ~0xFFF, struct.pack("<1024I", *table))
        # What Xen's builder does: validate and pin the L2 (which validates every
        # L1 and types every frame they map), then take the base-pointer reference.
        mm = MM(self.ft, self.ram, self.dt)
        if not (mm.pin_table(l2_mfn, PGT_l2_page_table, req.domid)
                and mm.get_page_and_type(l2_mfn, req.domid, PGT_l2_page_table)):
            raise BuildError(f"domain {req.name}: bootstrap page tables failed validation")

        # start_info.
        si = StartInfo()
        si.nr_pages = nr_pages
        si.shared_info = shared_mfn << 12
        si.flags = (SIF_PRIVILEGED | SIF_INITDOMAIN) if req.privileged else 0
        si.pt_base = l2_va
        si.nr_pt_frames = 1 + plan["nr_l1"]
        si.mfn_list = plan["v_mfn_list"]
        cmd = req.cmdline.encode()[:MAX_CMDLINE - 1]
        ctypes.memmove(si.cmd_line, cmd, len(cmd))
        self._write_virt(plan["v_start_info"], bytes(si), mfn_of)

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
        d.state = DS_RUNNING
        return d

    def _write_virt(self, va: int, data: bytes, mfn_of) -> None:
        off = 0
        while off < len(data):
            cur = va + off
            n = min(PAGE - (cur & (PAGE - 1)), len(data) - off)
            self.ram.write((mfn_of(cur) << 12) | (cur & (PAGE - 1)), data[off:off + n])
            off += n
