"""Event-channel benchmarks (`smpxen bench` keys evtchn_rtt_us, evtchn_oneway_us,
upcalls_per_s), all measured by the bundled evtchn_pingpong guest (the million-event
runs are in the soak group, smpxen/bench/soak.py):

- evtchn_rtt_us: two domains pinned to PCPUs 0 and 1 bounce an event; the
  initiator times every round trip with rdtsc (send hypercall to the return from
  its event handler and block) into a 1-us histogram and prints its median and p99.
- evtchn_oneway_us: half of those. The two directions run the same path (send
  hypercall, IPI_EVTCHN_SET, wake, schedule, upcall); the guest times round trips
  on one counter.
- evtchn_oneway_steps_us: where one direction goes, as the receiving PCPUs time it on
  the host clock every process shares (the report's pcpus[].event_wake_us; medians
  over the two PCPUs): `wire` (send to the receiver's watcher thread), `handoff`
  (to its main thread setting the port), `to_guest` (waking the domain to entering
  it); the rest is the guests' own code and the send hypercall.
- upcalls_per_s: one domain sends to itself over a loopback channel; every send
  is an upcall on return from the hypercall (elapsed rdtsc over the loop)."""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from smpxen.testing import console_values, run_up, write_config


def _pair_config(count: int) -> str:
    domains = "".join(f"""
[[domain]]
name = "{name}"
kernel = "evtchn_pingpong"
cpu = {cpu}
cmdline = "self={{domid}} peer={peer} count={count}"
""" for name, cpu, peer in (("responder", 0, 2), ("initiator", 1, 1)))
    return f"[machine]\ncpus = 2\nmemory_mib = 16\n{domains}"


def _loopback_config(count: int) -> str:
    return f"""
[machine]
cpus = 1
memory_mib = 16
[[domain]]
name = "loopback"
kernel = "evtchn_pingpong"
cmdline = "self={{domid}} peer={{domid}} count={count}"
"""


def _run(text: str, timeout: float) -> tuple[dict, dict]:
    """(name -> console values of every domain, the report) of a machine run to
    completion."""
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        result = run_up("--config", write_config(Path(d), text), "--quiet", report_dir=Path(d),
                        timeout=timeout)
    if result.status != 0:
        raise RuntimeError(f"benchmark machine failed ({result.status}): {result.stderr.strip()}")
    return {dom["name"]: console_values(dom) for dom in result.report["domains"]}, result.report


def _check(values: dict, count: int) -> None:
    for name, v in values.items():
        if (v.get("rounds"), v.get("lost"), v.get("duplicates")) != (count, 0, 0):
            raise RuntimeError(f"evtchn_pingpong {name} did not finish cleanly: {v}")


def pingpong(count: int, timeout: float) -> dict:
    values, report = _run(_pair_config(count), timeout)
    _check(values, count)
    init = values["initiator"]
    rtt = {"median": init["rtt_median_us"], "p99": init["rtt_p99_us"]}
    steps = [p["event_wake_us"] for p in report["pcpus"]]
    return {"evtchn_rtt_us": rtt,
            "evtchn_oneway_us": {k: v / 2 for k, v in rtt.items()},
            "evtchn_oneway_steps_us": {step: round(statistics.median(s[step]["median"] for s in steps), 1)
                                       for step in steps[0]},
            "evtchn_round_trips": count}


def upcalls(count: int) -> dict:
    v = _run(_loopback_config(count), 120)[0]["loopback"]
    _check({"loopback": v}, count)
    return {"upcalls_per_s": round(count / (v["elapsed_us"] / 1e6))}


def run(progress, quick: bool = False) -> dict:
    from smpxen.bench.machine import zmq_floor_rtt_us
    progress("event-channel ping-pong between PCPU 0 and PCPU 1")
    out = pingpong(2_000 if quick else 20_000, 300)
    progress("floor of an event's trip: two bare processes over the same sockets")
    floor = zmq_floor_rtt_us()
    out["zmq_floor_oneway_us"] = {k: floor[k] / 2 for k in ("median", "p99")}
    out["evtchn_oneway_vs_floor"] = round(out["evtchn_oneway_us"]["median"] / out["zmq_floor_oneway_us"]["median"], 2)
    progress("upcalls over a loopback channel, 1 PCPU")
    out.update(upcalls(5_000 if quick else 50_000))
    return out
