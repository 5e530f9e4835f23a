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
of the time model's residual skew.

Skew changes over a run (xen2 lets drift accumulate; percpu re-fits its scale
every 1 s epoch), so `windows` also gives, per window of the axis and pair of
PCPUs, the offset between their system times as NTP estimates a clock's: an
exchange is an IPI a->b (sent at t1 on a's time, received at t2 on b's) and the
next b->a sent after it arrived (t3 on b's time, received at t4 on a's); its
round trip (t4 - t1) - (t3 - t2) takes each clock's readings only against
themselves, so it is free of the skew, and b's time minus a's is
((t2 - t1) + (t3 - t4)) / 2, exact when both trips took equally long and never
off by more than half the round trip. Per window the exchange with the fastest
round trip gives the estimate; half that round trip is a one-way trip that no
placement can shrink (a figure below a bare message's one-way time would be a
measuring bug)."""
from __future__ import annotations

import bisect
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
        self.epoch: dict[int, int] = {}     # cpu -> anchors so far: records of one epoch are placed by one line

    def place(self, rec) -> int | None:
        """System time (ns) of `rec` on the common axis, or None."""
        if rec.event == TRC_TIME_ANCHOR:
            d = rec.d
            stime = _s64(d[0] | d[1] << 32)
            self.anchors[rec.cpu] = (rec.cycles, stime, d[2] | d[3] << 32)
            self.anchor_count += 1
            self.epoch[rec.cpu] = self.epoch.get(rec.cpu, 0) + 1
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


def _exchanges(placed: list, epochs: dict) -> list:
    """NTP exchanges from placed pairs: (t1, a, b, offset of b against a, round
    trip), with a the PCPU that started it. Both readings of each PCPU must come
    from one anchor epoch (`epochs`: record index -> its PCPU's epoch): a new
    anchor may move that PCPU's time (percpu's calibration warps it), and the
    round trip would take the jump for a faster trip."""
    back: dict = {}                 # (src, dst) -> sorted [(ts, tr, send epoch, recv epoch)]
    for ts, tr, src, dst, si, ri in placed:
        back.setdefault((src, dst), []).append((ts, tr, epochs.get(si), epochs.get(ri)))
    for v in back.values():
        v.sort()
    out = []
    for t1, t2, a, b, si, ri in placed:
        replies = back.get((b, a))
        if not replies:
            continue
        k = bisect.bisect_left(replies, (t2,))
        if k == len(replies):
            continue
        t3, t4, e3, e4 = replies[k]
        if e3 is None or (e3, e4) != (epochs.get(ri), epochs.get(si)):
            continue
        out.append((t1, a, b, ((t2 - t1) + (t3 - t4)) / 2, (t4 - t1) - (t3 - t2)))
    return out


def windows(pairs: list, epochs: dict, window_ns: int = 1_000_000_000) -> list[dict]:
    """Per window of the axis (by the send's time) and pair of PCPUs a < b: IPIs
    each way, how many came in before they left and by how much at most, and,
    from the exchange with the fastest round trip, b's time minus a's
    (`offset_us`, within +-`one_way_us`) and half that round trip (`one_way_us`);
    both None without an exchange."""
    placed = [(ts, tr, src, dst, si, ri) for ts, tr, src, dst, _code, si, ri in pairs
              if ts is not None and tr is not None]
    groups: dict = {}
    for ts, tr, src, dst, _si, _ri in placed:
        a, b = min(src, dst), max(src, dst)
        g = groups.setdefault((ts // window_ns, a, b), [[], [], None])
        g[0 if src == a else 1].append(tr - ts)
    for t1, a, b, offset, rtt in _exchanges(placed, epochs):
        if a > b:
            a, b, offset = b, a, -offset
        g = groups[(t1 // window_ns, a, b)]
        if g[2] is None or rtt < g[2][1]:
            g[2] = (offset, rtt)
    out = []
    for (w, a, b), (ab, ba, best) in sorted(groups.items()):
        inverted = [-x for x in ab + ba if x < 0]
        out.append({
            "from_s": round(w * window_ns / 1e9, 3), "pcpus": [a, b],
            "ipis": [len(ab), len(ba)], "inverted": len(inverted),
            "max_inversion_us": round(max(inverted) / 1000, 1) if inverted else 0.0,
            "offset_us": round(best[0] / 1000, 1) if best else None,
            "one_way_us": round(best[1] / 2000, 1) if best else None,
        })
    return out


def analyse(records, window_ns: int = 1_000_000_000) -> dict:
    """One pass over a trace: the time axis, IPI pairs, inversions (in all and per
    window of `window_ns`), and counts."""
    axis, ipis = TimeAxis(), IpiPairs()
    unplaced = 0
    cpus = set()
    epochs = {}                     # IPI record index -> its PCPU's anchor epoch
    n = 0
    for n, rec in enumerate(records, 1):
        cpus.add(rec.cpu)
        t = axis.place(rec)
        if t is None:
            unplaced += 1
        elif rec.event in (TRC_IPI_SEND, TRC_IPI_RECV):
            epochs[n - 1] = axis.epoch[rec.cpu]
        ipis.feed(rec, t, n - 1)
    out = {"records": n, "pcpus": sorted(cpus), "anchors": axis.anchor_count, "unplaced": unplaced,
           "unmatched_ipis": len(ipis.sends) + len(ipis.recvs)}
    out["inversions"] = inversions(ipis.pairs) if axis.anchor_count else None
    out["windows"] = windows(ipis.pairs, epochs, window_ns) if axis.anchor_count else []
    return out
