"""`smpxen up --trace FILE`: the machine process reads every PCPU's trace buffer
while the machine runs, as Xen's xentrace does from Domain-0, and once more after
the PCPUs have stopped; it is one of the machine's drivers (smpxen/machine/experiments.py
has the others). The file is xentrace's binary format (smpxen/trace/records.py).

Xen's xentrace looks every 100 ms. A PCPU making null hypercalls as fast as it
can writes about 400 000 records a second and fills a 256-page buffer (32 767
records) in some 80 ms, and a full buffer drops records (smpxen/trace/ring.py).
So the collector looks every 20 ms (a look at empty buffers reads two words per
PCPU), and sooner when they fill fast: when the fullest one would be half full
at the rate it filled since the last look, but never sooner than 2 ms."""
from __future__ import annotations

import time

from smpxen.trace.area import BufferReader

POLL_S = 0.02         # at most this long between looks
MIN_POLL_S = 0.002    # the soonest it looks again, however fast the buffers fill


def next_poll_s(fill: float, elapsed_s: float, longest_s: float = POLL_S) -> float:
    """Seconds until the next look, given the fullest buffer's share in use
    (0..1) after `elapsed_s` since the last look emptied it."""
    if fill <= 0:
        return longest_s
    return min(longest_s, max(MIN_POLL_S, 0.5 * elapsed_s / fill))


class TraceCollector:
    def __init__(self, out, mem, fd: int, path: str):
        self.out = out
        self.path = path
        self.reader = BufferReader(mem, fd)
        self.last = self.next = time.monotonic()

    def due(self) -> float:
        return self.next

    def fire(self, _outboxes=None) -> None:
        now = time.monotonic()
        fill = self.reader.fullest()
        self.reader.drain(self.out)
        self.next = now + next_poll_s(fill, now - self.last)
        self.last = now

    def finish(self) -> dict:
        """After the PCPUs stopped: take what is left, close the file, summarise."""
        self.reader.drain(self.out)
        self.out.close()
        self.reader.release()
        return dict(self.reader.summary(), file=self.path)
