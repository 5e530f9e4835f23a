"""One PCPU's trace buffer as a single-producer, single-consumer ring in machine
RAM (layouts: smpxen/xen/trace.py).

The PCPU that owns the buffer is its only writer: it fills the slot at `head`
and then advances `head`; the reader (the machine's collector for `smpxen up
--trace`, or `smpxen xentrace`) copies the slots from `tail` to `head` and then
advances `tail`. Each index has one writer and is a naturally aligned 32-bit
word written with one store (ctypes), and x86 keeps stores in order, so no lock
and no lock-prefixed instruction is needed across processes (which Unicorn and
Python could not give anyway: docs/design.md, invariant 1).

One slot stays empty, so head == tail means empty. A full buffer never blocks the
writer: the record is dropped and counted (`lost`, cumulative, in the header);
the next record that finds two free slots is preceded by a TRC_LOST_RECORDS
record giving how many went missing since the last one and the cycles at the
first of them."""
from __future__ import annotations

import struct

from smpxen.xen.trace import REC_FORMAT, REC_SIZE, TBUF_HEADER, TRC_LOST_RECORDS, TBuf

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
_pack = struct.Struct(REC_FORMAT).pack_into


def format_buffer(mem, offset: int, maddr: int, size_bytes: int) -> None:
    """Initialise an empty buffer of `size_bytes` at byte `offset` of `mem`, whose
    machine address is `maddr` (the machine process, before any PCPU runs)."""
    hdr = TBuf.from_buffer(mem, offset)
    hdr.data = maddr + TBUF_HEADER
    hdr.size = (size_bytes - TBUF_HEADER) // REC_SIZE
    hdr.head = hdr.tail = hdr.lost = 0


class TraceWriter:
    """The owning PCPU's side. `mask` is Xen's event mask: trace() records an
    event only when mask & event != 0 (hot paths test the mask themselves and
    call put()). The writer keeps its own copy of head (it is the only writer) and
    the tail it last read, which it reads again only when the ring looks full."""

    def __init__(self, mem, offset: int, mask: int, read_cycles):
        self.mem = mem
        self.hdr = TBuf.from_buffer(mem, offset)
        self.size = self.hdr.size
        self.recs = offset + TBUF_HEADER
        self.mask = mask
        self.read_cycles = read_cycles
        self.head = self.hdr.head
        self.tail = self.hdr.tail
        self.pending_lost = 0            # dropped since the last TRC_LOST_RECORDS
        self.first_lost_cycles = 0

    def trace(self, event: int, d1=0, d2=0, d3=0, d4=0, d5=0) -> None:
        if self.mask & event:
            self.put(self.read_cycles(), event, d1, d2, d3, d4, d5)

    def put(self, cycles: int, event: int, d1=0, d2=0, d3=0, d4=0, d5=0) -> None:
        """Write one record stamped `cycles` (no mask check)."""
        head = self.head
        nxt = head + 1
        if nxt == self.size:
            nxt = 0
        if nxt == self.tail or self.pending_lost:
            self._put_slow(cycles, event, d1, d2, d3, d4, d5)
            return
        _pack(self.mem, self.recs + head * REC_SIZE, cycles & M64, event,
              d1 & M32, d2 & M32, d3 & M32, d4 & M32, d5 & M32)
        self.head = self.hdr.head = nxt                  # publish: after the record

    def _put_slow(self, cycles, event, d1, d2, d3, d4, d5) -> None:
        """The ring looked full, or records went missing: look at the reader's tail
        again; drop and count if there is no room, else first say what was lost."""
        self.tail = self.hdr.tail
        head, size = self.head, self.size
        free = (self.tail - head - 1) % size
        if free < (2 if self.pending_lost else 1):
            if not self.pending_lost:
                self.first_lost_cycles = cycles & M64
            self.pending_lost += 1
            self.hdr.lost = (self.hdr.lost + 1) & M32
            return
        if self.pending_lost:
            first = self.first_lost_cycles
            _pack(self.mem, self.recs + head * REC_SIZE, cycles & M64, TRC_LOST_RECORDS,
                  self.pending_lost & M32, 0, first & M32, (first >> 32) & M32, 0)
            head = head + 1 if head + 1 < size else 0
            self.pending_lost = 0
        _pack(self.mem, self.recs + head * REC_SIZE, cycles & M64, event,
              d1 & M32, d2 & M32, d3 & M32, d4 & M32, d5 & M32)
        self.head = self.hdr.head = head + 1 if head + 1 < size else 0

    @property
    def lost(self) -> int:
        return self.hdr.lost


class TraceReader:
    """The reader's side of one buffer: take() returns the records written since
    the last call, as raw bytes (REC_SIZE each, oldest first), and frees their slots."""

    def __init__(self, mem, offset: int):
        self.mem = mem
        self.hdr = TBuf.from_buffer(mem, offset)
        self.size = self.hdr.size
        self.recs = offset + TBUF_HEADER

    def pending(self) -> int:
        return (self.hdr.head - self.hdr.tail) % self.size

    def take(self) -> bytes:
        hdr, mem, recs = self.hdr, self.mem, self.recs
        head, tail = hdr.head, hdr.tail
        if head >= tail:
            data = bytes(mem[recs + tail * REC_SIZE:recs + head * REC_SIZE])
        else:
            data = (bytes(mem[recs + tail * REC_SIZE:recs + self.size * REC_SIZE])
                    + bytes(mem[recs:recs + head * REC_SIZE]))
        hdr.tail = head                  # release the slots: after the copy
        return data

    @property
    def lost(self) -> int:
        return self.hdr.lost
