"""The frame table (Xen's struct pfn_info array) and the free-frame pool, in the
hypervisor region of machine RAM so every PCPU process sees the same state.
All mutation happens under Locks.mm (see locks.py)."""
from __future__ import annotations

import ctypes

from smpxen.shm.layout import MAX_PCPUS
from smpxen.xen.xen import DOMID_XEN

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

OWNER_NONE = 0xFFFF        # free frame
OWNER_XEN = DOMID_XEN      # hypervisor region

# count_info (asm-x86/mm.h)
PGC_allocated = 1 << 31
PGC_count_mask = (1 << 31) - 1
# type_info
PGT_none = 0 << 29
PGT_l1_page_table = 1 << 29
PGT_l2_page_table = 2 << 29
PGT_l3_page_table = 3 << 29
PGT_l4_page_table = 4 << 29
PGT_gdt_page = 5 << 29
PGT_ldt_page = 6 << 29
PGT_writable_page = 7 << 29
PGT_type_mask = 7 << 29
PGT_validated = 1 << 28
PGT_pinned = 1 << 27
PGT_va_shift = 17
PGT_va_mask = ((1 << 10) - 1) << PGT_va_shift
PGT_va_mutable = PGT_va_mask
PGT_va_unknown = PGT_va_mask - (1 << PGT_va_shift)
PGT_count_mask = (1 << 17) - 1

# FrameInfo.flags (smpxen-private)
FF_XEN_HEAP = 1 << 0       # shared with a domain by the hypervisor (shared_info); not in tot_pages

TYPE_NAMES = {PGT_none: "none", PGT_l1_page_table: "l1", PGT_l2_page_table: "l2",
              PGT_l3_page_table: "l3", PGT_l4_page_table: "l4", PGT_gdt_page: "gdt",
              PGT_ldt_page: "ldt", PGT_writable_page: "writable"}


class FrameInfo(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [
        ("count_info", u32),
        ("type_info", u32),
        ("owner", u16),
        ("flags", u16),
        ("tlbflush_timestamp", u32),
        ("next_free", u32),
        ("cpu_mask", u32),            # free frames: PCPUs (bit = index % 32) that may cache it
    ]


assert ctypes.sizeof(FrameInfo) == 24


class MachineHeader(ctypes.LittleEndianStructure):
    """Frame 0: machine-wide hypervisor state."""
    _pack_ = 1
    _fields_ = [
        ("magic", u32),
        ("nr_frames", u32),
        ("nr_pcpus", u32),
        ("free_head", u32),
        ("free_count", u32),
        ("tlbflush_clock", u32),       # Xen's global TLB-flush clock
        ("next_domid", u32),           # Xen's allocate_domid: the last id handed out (curdom)
        ("top_domid", u32),            # ... and the top of the range it reuses (topdom)
        ("tlbflush_time", u32 * MAX_PCPUS),   # per PCPU: clock value at its last full flush
        ("tbflush_time", u32 * MAX_PCPUS),    # per PCPU: clock value at its last translation-cache flush
        ("tb_stale", u8 * MAX_PCPUS),         # per PCPU: drop translated code before running a domain
        # Trace buffers (smpxen/trace/area.py): DOM0_GETTBUFS's answer (0, 0: none)
        # and the event mask every PCPU applies.
        ("tbuf_maddr", u32),
        ("tbuf_size", u32),
        ("tb_event_mask", u32),
    ]


MAGIC = 0x584D5053   # "SPMX"
DOMID_TOP_START = 101  # dom0_ops.c allocate_domid: ids are reused in 1..topdom first
NO_FRAME = 0xFFFFFFFF


class OutOfFrames(Exception):
    pass


class FrameTable:
    """Typed view of the frame table and free pool over a MachineRAM mapping."""

    def __init__(self, ram, layout, locks):
        self.ram = ram
        self.layout = layout
        self.locks = locks
        self.header = MachineHeader.from_buffer(ram.mem, layout.header_mfn << 12)
        self.frames = (FrameInfo * layout.nr_frames).from_buffer(ram.mem, layout.frametable_mfn << 12)
        self.m2p = (u32 * layout.nr_frames).from_buffer(ram.mem, layout.m2p_mfn << 12)

    def format(self) -> None:
        """Machine process, before any PCPU runs: hypervisor frames owned by Xen, the rest free."""
        h = self.header
        h.magic = MAGIC
        h.nr_frames = self.layout.nr_frames
        h.nr_pcpus = self.layout.nr_pcpus
        h.next_domid = 0
        h.top_domid = DOMID_TOP_START
        for mfn in range(self.layout.nr_frames):
            f = self.frames[mfn]
            self.m2p[mfn] = NO_FRAME
            if mfn < self.layout.hv_frames:
                f.owner, f.count_info, f.type_info = OWNER_XEN, 1, PGT_none
                f.next_free = NO_FRAME
            else:
                f.owner, f.count_info, f.type_info = OWNER_NONE, 0, PGT_none
                f.next_free = mfn + 1 if mfn + 1 < self.layout.nr_frames else NO_FRAME
        h.free_head = self.layout.hv_frames
        h.free_count = self.layout.nr_frames - self.layout.hv_frames

    def alloc(self, owner: int, count: int, flags: int = 0) -> list[int]:
        """Take `count` frames from the free pool for `owner` (PGC_allocated, one ref)."""
        with self.locks.mm:
            h = self.header
            if h.free_count < count:
                raise OutOfFrames(f"need {count} frames, {h.free_count} free")
            out = []
            for _ in range(count):
                mfn = h.free_head
                f = self.frames[mfn]
                h.free_head = f.next_free
                f.next_free = NO_FRAME
                f.owner = owner
                f.flags = flags
                f.count_info = PGC_allocated | 1
                f.type_info = PGT_none
                out.append(mfn)
            h.free_count -= count
            return out

    def free(self, mfns) -> None:
        """Return frames to the pool. The caller has made sure no CPU still caches them."""
        with self.locks.mm:
            h = self.header
            for mfn in mfns:
                f = self.frames[mfn]
                f.owner = OWNER_NONE
                f.count_info = 0
                f.type_info = PGT_none
                f.flags = 0
                self.m2p[mfn] = NO_FRAME
                f.next_free = h.free_head
                h.free_head = mfn
                h.free_count += 1

    def owner(self, mfn: int) -> int:
        return self.frames[mfn].owner if 0 <= mfn < self.layout.nr_frames else OWNER_NONE
