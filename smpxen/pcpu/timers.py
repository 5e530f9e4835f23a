"""A PCPU's software timers (Xen's per-CPU ac_timer heap), keyed by system time.
Timers due within TIMER_SLOP of each other fire together, as in Xen."""
from __future__ import annotations

import heapq
import itertools

TIMER_SLOP_NS = 50_000


class TimerHeap:
    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._live: dict = {}           # key -> entry currently armed for that key

    def set(self, key, deadline: int) -> None:
        """Arm (or re-arm) the timer named `key`."""
        self.cancel(key)
        entry = [deadline, next(self._seq), key, True]
        self._live[key] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, key) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            entry[3] = False

    def deadline(self, key):
        entry = self._live.get(key)
        return entry[0] if entry else None

    def next_deadline(self, ignore=()) -> int | None:
        """The earliest live deadline, leaving out the timers named in `ignore`."""
        if ignore:
            return min((e[0] for k, e in self._live.items() if k not in ignore), default=None)
        heap = self._heap
        while heap and not heap[0][3]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: int, slop: int = TIMER_SLOP_NS) -> list:
        """Keys of every live timer due by now + slop, earliest first; they are disarmed."""
        out = []
        heap = self._heap
        while heap and (not heap[0][3] or heap[0][0] <= now + slop):
            entry = heapq.heappop(heap)
            if entry[3]:
                entry[3] = False
                del self._live[entry[2]]
                out.append(entry[2])
        return out
