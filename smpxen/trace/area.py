"""The machine's trace buffers as a whole: formatting them before the PCPUs run,
DOM0_GETTBUFS's answer, and the reader's side (one reader at a time) that both
`smpxen up --trace` and `smpxen xentrace` use.

Buffer i starts at the machine address GETTBUFS gives plus i times its size, as
in Xen 2.0; the MachineHeader in frame 0 holds that answer and the event mask, so
a reader needs nothing but machine RAM. Reading never stops a PCPU: the reader
copies what its rings hold and moves their tails (smpxen/trace/ring.py)."""
from __future__ import annotations

import ctypes
import fcntl
import os
from dataclasses import dataclass

from smpxen.shm.frametable import MAGIC, MachineHeader
from smpxen.shm.locks import LOCK_TRACE_READER
from smpxen.trace.records import frame
from smpxen.trace.ring import TraceReader, format_buffer
from smpxen.xen.arch_x86_32 import PAGE_SIZE


class TraceAreaError(Exception):
    pass


# For a reader other than --trace (which is a reader itself: one at a time).
NO_BUFFERS = ("the machine has no trace buffers (start it with machine.trace_pages > 0, "
              "e.g. smpxen up --set machine.trace_pages=256)")


def format_area(mem, layout, header, mask: int) -> None:
    """Empty buffers for every PCPU and GETTBUFS's answer in the header (machine
    process, before the PCPUs exist). No buffers: the answer is (0, 0)."""
    size = layout.trace_pages * PAGE_SIZE
    for cpu in range(layout.nr_pcpus if size else 0):
        maddr = layout.tbuf_maddr(cpu)
        format_buffer(mem, maddr, maddr, size)
    header.tbuf_maddr = layout.tbuf_maddr(0) if size else 0
    header.tbuf_size = size
    header.tb_event_mask = mask if size else 0


@dataclass(frozen=True)
class TbufInfo:
    mach_addr: int          # DOM0_GETTBUFS: buffer 0
    size: int               # bytes per buffer
    nr_pcpus: int
    mask: int


def tbuf_info(header) -> TbufInfo | None:
    """DOM0_GETTBUFS from the header; None when the machine has no buffers."""
    if not header.tbuf_size:
        return None
    return TbufInfo(header.tbuf_maddr, header.tbuf_size, header.nr_pcpus, header.tb_event_mask)


class BufferReader:
    """Every PCPU's buffer, read by this process. Taking the reader lock first
    keeps a second reader (another xentrace, or --trace) off: each tail has one
    writer. `gettbufs`, DOM0_GETTBUFS's (mach_addr, size) if the reader asked
    Domain-0, must agree with the header."""

    def __init__(self, mem, fd: int, gettbufs: tuple[int, int] | None = None):
        header = MachineHeader.from_buffer_copy(bytes(mem[:ctypes.sizeof(MachineHeader)]))
        if header.magic != MAGIC:
            raise TraceAreaError("not an smpxen machine's RAM (no hypervisor header)")
        info = tbuf_info(header)
        if info is not None and gettbufs is not None and gettbufs != (info.mach_addr, info.size):
            raise TraceAreaError(f"DOM0_GETTBUFS says {gettbufs}, the hypervisor's header "
                                 f"{(info.mach_addr, info.size)}")
        if info is None:
            raise TraceAreaError(NO_BUFFERS)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, LOCK_TRACE_READER, os.SEEK_SET)
        except OSError:
            raise TraceAreaError("another reader (smpxen xentrace or smpxen up --trace) "
                                 "is reading this machine's trace buffers") from None
        self.fd = fd
        self.info = info
        self.readers = [TraceReader(mem, info.mach_addr + cpu * info.size) for cpu in range(info.nr_pcpus)]
        self.records = [0] * info.nr_pcpus      # records taken, per PCPU
        self.lost_before = [r.lost for r in self.readers]   # dropped before this reader came

    def drain(self, out) -> int:
        """Write every record the buffers hold to `out` (xentrace's format);
        returns how many."""
        total = 0
        for cpu, r in enumerate(self.readers):
            raw = r.take()
            if raw:
                out.write(frame(cpu, raw))
                n = len(raw) // 32
                self.records[cpu] += n
                total += n
        return total

    def fullest(self) -> float:
        """The share (0..1) of the fullest buffer that holds records not yet taken."""
        return max(r.pending() / max(r.size - 1, 1) for r in self.readers)

    def lost(self) -> list[int]:
        """Records each buffer dropped while this reader read (the count wraps at 2^32)."""
        return [(r.lost - before) & 0xFFFFFFFF for r, before in zip(self.readers, self.lost_before)]

    def summary(self) -> dict:
        lost = self.lost()
        return {"records": sum(self.records), "lost": sum(lost),
                "per_pcpu": [{"records": n, "lost": l} for n, l in zip(self.records, lost)],
                "buffer_bytes": self.info.size, "mask": self.info.mask}

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, LOCK_TRACE_READER, os.SEEK_SET)
