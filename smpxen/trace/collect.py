"""`smpxen up --trace FILE`: the machine process reads every PCPU's trace buffer
while the machine runs, as Xen's xentrace does from Domain-0 (it polls every
100 ms, sooner while some buffer is more than half full), and once more after the
PCPUs have stopped; it is one of the machine's drivers (smpxen/machine/experiments.py
has the others). The file is xentrace's binary format (smpxen/trace/records.py)."""
from __future__ import annotations

import time

from smpxen.trace.area import BufferReader

POLL_S = 0.1          # Xen's xentrace: POLL_SLEEP_MILLIS
BUSY_POLL_S = 0.01    # while a buffer is more than half full


class TraceCollector:
    def __init__(self, out, mem, fd: int, path: str):
        self.out = out
        self.path = path
        self.reader = BufferReader(mem, fd)
        self.next = time.monotonic()

    def due(self) -> float:
        return self.next

    def fire(self, _outboxes=None) -> None:
        busy = any(r.pending() * 2 > r.size for r in self.reader.readers)
        self.reader.drain(self.out)
        self.next = time.monotonic() + (BUSY_POLL_S if busy else POLL_S)

    def finish(self) -> dict:
        """After the PCPUs stopped: take what is left, close the file, summarise."""
        self.reader.drain(self.out)
        self.out.close()
        self.reader.release()
        return dict(self.reader.summary(), file=self.path)
