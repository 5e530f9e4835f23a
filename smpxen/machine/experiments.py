"""Experiment drivers the machine runs while domains execute: sampling every
PCPU's system time to measure cross-CPU skew, and moving a domain from PCPU to
PCPU on a period. Both use the simulator's ground truth (the host clock) only to
measure and to pace, never to inform the time models."""
from __future__ import annotations

import statistics
import time

from smpxen.ipc import messages as M


class TimeProbe:
    """Every `period_ms`, ask every PCPU for its raw system time; pairwise skew is
    the spread of (system time - host time) across PCPUs at one probe."""

    def __init__(self, period_ms: float, nr_pcpus: int, epoch_ns: int):
        self.period = period_ms / 1000
        self.nr = nr_pcpus
        self.epoch_ns = epoch_ns
        self.next_at = time.monotonic() + self.period
        self.seq = 0
        self.samples: dict[int, dict[int, int]] = {}
        self.spreads: list[int] = []
        self.last_offsets: dict[int, int] = {}

    def due(self) -> float:
        return self.next_at

    def fire(self, outboxes) -> None:
        self.seq += 1
        self.samples[self.seq] = {}
        self.samples.pop(self.seq - 20, None)     # a probe sent before time ran never completes
        for sock in outboxes:
            sock.send(M.encode(M.TIME_PROBE, M.MACHINE, self.seq))
        self.next_at = time.monotonic() + self.period

    def sample(self, pcpu: int, seq: int, stime: int, host_ns: int) -> None:
        got = self.samples.get(seq)
        if got is None:
            return
        got[pcpu] = stime - (host_ns - self.epoch_ns)
        if len(got) == self.nr:
            offsets = self.samples.pop(seq)
            self.spreads.append(max(offsets.values()) - min(offsets.values()))
            self.last_offsets = offsets

    def report(self) -> dict:
        s = self.spreads
        base = min(self.last_offsets.values(), default=0)
        return {
            "probes": len(s),
            "max_pairwise_ns": max(s, default=None),
            "median_pairwise_ns": int(statistics.median(s)) if s else None,
            "last_pairwise_ns": s[-1] if s else None,
            "last_offsets_ns": {i: o - base for i, o in sorted(self.last_offsets.items())},
        }


class StatusLine:
    """Every `period_s`, one line on stderr: elapsed time and which domains still run."""

    def __init__(self, period_s: float, records, stream):
        self.period = period_s
        self.records = records
        self.stream = stream
        self.t0 = time.monotonic()
        self.next_at = self.t0 + period_s

    def due(self) -> float:
        return self.next_at

    def fire(self, _outboxes) -> None:
        self.next_at = time.monotonic() + self.period
        running = [r for r in self.records.values() if not r.ended]
        names = ", ".join(f"d{r.domid} {r.name}" for r in running[:8])
        more = f" and {len(running) - 8} more" if len(running) > 8 else ""
        self.stream.write(f"smpxen: {time.monotonic() - self.t0:.0f}s, {len(running)} of "
                          f"{len(self.records)} domains running: {names}{more}\n")
        self.stream.flush()


class Migrator:
    """Move one domain to the next PCPU every `period_ms` (like `xm pin` in a loop)."""

    def __init__(self, domid: int, period_ms: float, nr_pcpus: int, domtable):
        self.domid = domid
        self.period = period_ms / 1000
        self.nr = nr_pcpus
        self.domtable = domtable
        self.next_at = time.monotonic() + self.period
        self.moves = 0

    def due(self) -> float:
        return self.next_at

    def fire(self, outboxes) -> None:
        self.next_at = time.monotonic() + self.period
        info = self.domtable.find(self.domid)
        if info is None:
            return
        owner = info.processor
        outboxes[owner].send(M.encode(M.MIGRATE, M.MACHINE, self.domid, (owner + 1) % self.nr))
        self.moves += 1
