"""This PCPU's trace buffer (Xen's trace() and TRACE_xD macros): the writer of its
own buffer in machine RAM, the event mask, and the helpers the trace points call.
Layouts and ids: smpxen/xen/trace.py; the ring: smpxen/trace/ring.py.

A trace point costs one AND when its event is masked out or the machine has no
buffers (mask 0): hot paths test `pcpu.trace_mask & EVENT` before calling in.
Records carry this PCPU's own cycle counter, skew and all; TRC_TIME_ANCHOR
records say what system time the time model gives at a counter value, so the
tools can put every PCPU's records on one axis (smpxen/trace/timeline.py).

IPIs are numbered per (sender, receiver, kind) on both sides: ZeroMQ keeps one
sender's messages in order and the PCPU handles each kind in arrival order, so
the n-th send of a kind from A to B is the n-th receive of that kind at B from A."""
from __future__ import annotations

import collections

from smpxen.trace.kinds import ipi_code, payload_words
from smpxen.trace.ring import TraceWriter
from smpxen.xen.trace import (TRC_IPI_RECV, TRC_IPI_SEND, TRC_TIME_ANCHOR)

M32 = 0xFFFFFFFF


ANCHOR_NS = 10_000_000      # at most this long (by the model's scale) between anchors


class PcpuTrace:
    def __init__(self, pcpu):
        header = pcpu.frames.header
        self.pcpu = pcpu
        self.mask = header.tb_event_mask if header.tbuf_size else 0
        self.writer = None
        if self.mask:
            self.writer = TraceWriter(pcpu.ram.mem, header.tbuf_maddr + pcpu.index * header.tbuf_size,
                                      self.mask, pcpu.clock.read_tsc)
        self._read_tsc = pcpu.clock.read_tsc
        self._write = self.writer.put if self.writer else None
        self._sent = collections.Counter()       # (target, kind) -> IPIs sent
        self._received = collections.Counter()   # (source, kind) -> IPIs received
        self._anchors = bool(self.mask & TRC_TIME_ANCHOR)
        self._time_up = False                    # the time model runs (clock.start done)
        self._anchor_tsc = 0
        self._anchor_every = 0                   # cycles between anchors

    def trace(self, event: int, d1=0, d2=0, d3=0, d4=0, d5=0) -> None:
        """Record `event` with up to five data words, if the mask lets it through."""
        if self.mask & event:
            self.put(event, d1, d2, d3, d4, d5)

    def put(self, event: int, d1=0, d2=0, d3=0, d4=0, d5=0) -> None:
        """Record `event` (the caller tested the mask), preceded by a time anchor
        when the last one is ANCHOR_NS old or the counter went back (the xen2
        boot barrier zeroes it)."""
        tsc = self._read_tsc()
        if self._time_up and not 0 <= tsc - self._anchor_tsc < self._anchor_every:
            self._anchor(tsc)
        self._write(tsc, event, d1, d2, d3, d4, d5)

    def time_up(self) -> None:
        """The time model runs from now on (and may have a new scale): anchor."""
        if self._anchors:
            self._time_up = True
            self._anchor(self.pcpu.clock.read_tsc())

    def _anchor(self, tsc: int) -> None:
        """TRC_TIME_ANCHOR: the system time the time model gives at this record's
        counter value, and the scale it extrapolates with (ns per cycle, 32.32)."""
        timebase = self.pcpu.clock.timebase
        stime = timebase.raw_now(tsc)
        scale = timebase.ns_per_cycle_q32()
        self.writer.put(tsc, TRC_TIME_ANCHOR, stime & M32, (stime >> 32) & M32,
                        scale & M32, (scale >> 32) & M32, 0)
        self._anchor_tsc = tsc
        self._anchor_every = (ANCHOR_NS << 32) // max(scale, 1)

    def ipi_sent(self, target: int, kind: str, payload) -> None:
        if self.mask & TRC_IPI_SEND:
            code = ipi_code(kind)
            self._sent[target, code] += 1
            self.put(TRC_IPI_SEND, target, code, self._sent[target, code], *payload_words(payload))

    def ipi_received(self, msg) -> None:
        if self.mask & TRC_IPI_RECV:
            code = ipi_code(msg[0])
            self._received[msg[1], code] += 1
            self.put(TRC_IPI_RECV, msg[1], code, self._received[msg[1], code], *payload_words(msg[2:]))

    def summary(self) -> dict | None:
        """For the PCPU's report: the mask and the records its full buffer dropped."""
        if self.writer is None:
            return None
        return {"mask": self.mask, "lost": self.writer.lost}
