"""Putting every PCPU's records on one time axis, and measuring how far apart the
PCPUs' clocks are by what that does to cause and effect.

A record carries its PCPU's own cycle counter, which is skewed by design (each
counter has its own offset, frequency and drift). Nothing outside the machine is
used to undo that: each PCPU writes TRC_TIME_ANCHOR records saying what system
time its time model gives at a counter value and the scale it extrapolates with
(smpxen/pcpu/trace.py, at least every 10 ms of activity), and a record is placed
at the latest anchor of its PCPU plus its cycles since then at that scale, which
is what the PCPU itself would have read as system time then (to within how much
the model's stamp moved since the anchor). Records before a PCPU's first anchor
(before its time was up) have no place.

An IPI is received after it is sent. Placed on the axis, a receive that comes
before its send (IPIs are paired exactly: smpxen/pcpu/trace.py numbers them per
sender, receiver and kind) shows the two PCPUs' system times disagreeing by more
than the message took: `inversions` counts them and gives the largest, a figure
of the time model's residual skew."""
from __future__ import annotations

from dataclasses import dataclass, field

from smpxen.measure import summary
from smpxen.trace.kinds import ipi_name
from smpxen.xen.trace import TRC_IPI_RECV, TRC_IPI_SEND, TRC_TIME_ANCHOR


def _s64(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


class TimeAxis:
    """Streaming: feed records in file order (each PCPU's in its own order)."""

    def __init__(self):
        self.anchors: dict[int, tuple[int, int, int]] = {}    # cpu -> (cycles, stime, scale q32)
        self.anchor_count = 0

    def place(self, rec) -> int | None:
        """System time (ns) of `rec` on the common axis, or None."""
        if rec.event == TRC_TIME_ANCHOR:
            d = rec.d
            stime = _s64(d[0] | d[1] << 32)
            self.anchors[rec.cpu] = (rec.cycles, stime, d[2] | d[3] << 32)
            self.anchor_count += 1
            return stime
        a = self.anchors.get(rec.cpu)
        if a is None:
            return None
        delta = rec.cycles - a[0]
        if delta < 0:                 # older than its PCPU's anchor: cannot be placed
            return None
        return a[1] + (delta * a[2] >> 32)


@dataclass
class IpiPairs:
    """Matches IPI sends with their receives as records stream by."""
    sends: dict = field(default_factory=dict)     # (src, dst, code, seq) -> (time, rec index)
    recvs: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)     # (send time, recv time, src, dst, code, send idx, recv idx)

    def feed(self, rec, t, index: int) -> None:
        if rec.event == TRC_IPI_SEND:
            key, mine, other = (rec.cpu, rec.d[0], rec.d[1], rec.d[2]), self.sends, self.recvs
        elif rec.event == TRC_IPI_RECV:
            key, mine, other = (rec.d[0], rec.cpu, rec.d[1], rec.d[2]), self.recvs, self.sends
        else:
            return
        match = other.pop(key, None)
        if match is None:
            mine[key] = (t, index)
            return
        (ts, si), (tr, ri) = (match, (t, index)) if mine is self.recvs else ((t, index), match)
        self.pairs.append((ts, tr, key[0], key[1], key[2], si, ri))


def inversions(pairs: list) -> dict:
    """What the paired IPIs say about the PCPUs' clocks on the common axis."""
    placed = [(ts, tr, src, dst, code) for ts, tr, src, dst, code, _si, _ri in pairs
              if ts is not None and tr is not None]
    lat = [tr - ts for ts, tr, *_ in placed]
    inverted = [-x for x in lat if x < 0]
    worst = None
    if inverted:
        ts, tr, src, dst, code = min(placed, key=lambda p: p[1] - p[0])
        worst = {"from_pcpu": src, "to_pcpu": dst, "kind": ipi_name(code), "by_ns": ts - tr}
    return {
        "ipi_pairs": len(pairs),
        "placed_pairs": len(placed),
        "inverted": len(inverted),
        "inverted_share": round(len(inverted) / len(placed), 4) if placed else None,
        "max_inversion_ns": max(inverted) if inverted else 0,
        "worst": worst,
        "latency_us": summary([x / 1000 for x in lat], digits=1),
    }


def analyse(records) -> dict:
    """One pass over a trace: the time axis, IPI pairs, inversions, and counts."""
    axis, ipis = TimeAxis(), IpiPairs()
    unplaced = 0
    cpus = set()
    n = 0
    for n, rec in enumerate(records, 1):
        cpus.add(rec.cpu)
        t = axis.place(rec)
        if t is None:
            unplaced += 1
        ipis.feed(rec, t, n - 1)
    out = {"records": n, "pcpus": sorted(cpus), "anchors": axis.anchor_count, "unplaced": unplaced,
           "unmatched_ipis": len(ipis.sends) + len(ipis.recvs)}
    out["inversions"] = inversions(ipis.pairs) if axis.anchor_count else None
    return out
