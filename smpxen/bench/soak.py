"""`smpxen bench --group soak`: exactly once, counted. One million events between
two PCPUs (500 000 round trips of the evtchn_pingpong guest), one million events
over a loopback channel, and one million system calls through the fast trap (the
fasttrap_soak guest). Every count must come out exact: an event or a system call
lost or run twice shows as a difference, and makes the group fail. `--quick` runs
1/50 of each; the test suite runs a smaller version of the same code."""
from __future__ import annotations

import time

from smpxen.bench.events import _loopback_config, _pair_config, _run

FULL = {"cross_pcpu_round_trips": 500_000, "loopback_events": 1_000_000, "fast_trap_calls": 1_000_000}


def _fast_trap_config(calls: int) -> str:
    return f"""
[machine]
cpus = 1
memory_mib = 16
[[domain]]
name = "fasttrap"
kernel = "fasttrap_soak"
cmdline = "{calls}"
"""


def soak(cross_pcpu_round_trips: int, loopback_events: int, fast_trap_calls: int,
         progress=lambda text: None) -> dict:
    out = {}
    progress(f"soak: {2 * cross_pcpu_round_trips} events between PCPU 0 and PCPU 1")
    t = time.monotonic()
    pair, _report = _run(_pair_config(cross_pcpu_round_trips), 3600)
    out["cross_pcpu"] = {
        "events_sent": 2 * cross_pcpu_round_trips,
        "received": sum(v["received"] for v in pair.values()),
        "lost": sum(v["lost"] for v in pair.values()),
        "duplicated": sum(v["duplicates"] for v in pair.values()),
        "seconds": round(time.monotonic() - t, 1)}
    progress(f"soak: {loopback_events} events over a loopback channel")
    t = time.monotonic()
    loop = _run(_loopback_config(loopback_events), 3600)[0]["loopback"]
    out["loopback"] = {"events_sent": loopback_events, "received": loop["received"],
                       "lost": loop["lost"], "duplicated": loop["duplicates"],
                       "seconds": round(time.monotonic() - t, 1)}
    progress(f"soak: {fast_trap_calls} fast-trap system calls from ring 3")
    t = time.monotonic()
    ft = _run(_fast_trap_config(fast_trap_calls), 3600)[0]["fasttrap"]
    out["fast_trap"] = {"calls": fast_trap_calls, "user_calls": ft["user_calls"],
                        "kernel_calls": ft["kernel_calls"], "bad_results": ft["bad_results"],
                        "seconds": round(time.monotonic() - t, 1)}
    out["exact"] = (out["cross_pcpu"]["received"] == out["cross_pcpu"]["events_sent"]
                    and loop["received"] == loopback_events
                    and ft["user_calls"] == ft["kernel_calls"] == fast_trap_calls
                    and not (out["cross_pcpu"]["lost"] or out["cross_pcpu"]["duplicated"]
                             or loop["lost"] or loop["duplicates"] or ft["bad_results"]))
    return out


def run(progress, quick: bool = False) -> dict:
    sizes = {k: v // 50 for k, v in FULL.items()} if quick else FULL
    result = soak(progress=progress, **sizes)
    if not result["exact"]:
        raise RuntimeError(f"soak counts are not exact: {result}")
    return {"soak": result}
