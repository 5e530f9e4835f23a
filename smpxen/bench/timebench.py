"""Time and scheduling benchmarks (issue 4): cross-PCPU skew under both time
models against the measured one-way message latency, backward steps seen by a
migrating domain, timer lateness, and BVT share accuracy."""
from __future__ import annotations

import itertools
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path

from smpxen.bench.machine import _spread
from smpxen.testing import console_values, run_up, write_config

FREQ_MHZ = 2000
SKEWS_NS = (0, 10_000, 1_000_000)
DRIFTS_PPM = (0, 100)


def _run(text: str, *args, timeout=300):
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        cfg = write_config(Path(d), text)
        result = run_up("--config", cfg, "--quiet", *args, report_dir=Path(d), timeout=timeout)
    if result.report is None:
        raise RuntimeError(f"benchmark machine failed ({result.status}): {result.stderr.strip()}")
    return result


_values = console_values


def time_skew_case(model: str, skew_ns: int, drift_ppm: int, reads: int) -> dict:
    text = f"""
[machine]
cpus = 2
time_model = "{model}"
[clock]
freq_mhz = {FREQ_MHZ}
[[clock.pcpu]]
index = 1
offset_cycles = {skew_ns * FREQ_MHZ // 1000}
drift_ppm = {drift_ppm}
[[domain]]
name = "tw"
kernel = "timewatch"
cpu = 0
cmdline = "{reads}"
"""
    result = _run(text, "--migrate", "tw:10", "--probe-time-ms", "25")
    r = result.report
    tw = _values(r["domains"][0])
    skew = r["time_skew"]
    return {
        "model": model, "configured_skew_ns": skew_ns, "drift_ppm": drift_ppm,
        "residual_skew_ns": {"median": skew["median_pairwise_ns"], "max": skew["max_pairwise_ns"],
                             "last": skew["last_pairwise_ns"], "probes": skew["probes"]},
        "one_way_latency_us": round(r["ipi_rtt_us_median"] / 2, 1) if r["ipi_rtt_us_median"] else None,
        "run_s": r["timings_s"].get("run_s"),
        "migrations": r["migrations"]["tw"],
        "time_reads": tw.get("reads"),
        "backwards_steps": tw.get("backwards"),
        "max_backwards_ns": tw.get("max_back_ns"),
    }


def host_wait_late_us(rounds: int, delay_ns: int = 3_000_000) -> list[float]:
    """The floor under a timer wake-up: a process forked as a PCPU is (no timer
    slack) waits `delay_ns` on a threading.Event, as an idle PCPU waits for its next
    deadline; how late it wakes, in us, on the host clock."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()

    def waiter(conn):
        from smpxen.pcpu.__main__ import _no_timer_slack
        _no_timer_slack()
        event, late = threading.Event(), []
        for _ in range(rounds):
            due = time.monotonic_ns() + delay_ns
            event.wait((due - time.monotonic_ns()) / 1e9)
            late.append((time.monotonic_ns() - due) / 1000)
        conn.send(late)

    proc = ctx.Process(target=waiter, args=(theirs,))
    proc.start()
    late = ours.recv()
    proc.join()
    return late


def timer_error_us(rounds: int, repeats: int = 3) -> dict:
    """set_timer_op lateness for 3 ms timers (timer_test's own mean), interleaved
    with its floor (host_wait_late_us, same rounds); where a wake-up goes, from the
    PCPU's timer_wake_us: how late it fired the timer, then from firing it to
    entering the domain (medians; the rest is the guest's upcall and time read)."""
    text = f"""
[machine]
cpus = 1
[[domain]]
name = "tt"
kernel = "timer_test"
cmdline = "{rounds}"
"""
    means, maxes, early, floors, fire, to_guest = [], [], 0, [], [], []
    for _ in range(repeats):
        floors.append(statistics.mean(host_wait_late_us(rounds)))
        report = _run(text).report
        tt = _values(report["domains"][0])
        means.append(tt["mean_late_us"])
        maxes.append(tt["max_late_us"])
        early += tt["early"]
        steps = report["pcpus"][0]["timer_wake_us"]
        fire.append(steps["fire_late"]["median"])
        to_guest.append(steps["to_guest"]["median"])
    return {"mean": _spread(means), "max": max(maxes), "early": early,
            "rounds": rounds, "repeats": repeats, "requested_delay_ms": 3,
            "host_wait_floor_us": _spread(floors),
            "mean_vs_floor": round(statistics.median(means) / statistics.median(floors), 2),
            "steps_median_us": {"fire_late": _spread(fire), "to_guest": _spread(to_guest)}}


def bvt_share_error(seconds: float) -> dict:
    advances = (10, 20, 40)
    doms = "".join(f"""
[[domain]]
name = "w{a}"
kernel = "spin"
cpu = 0
cmdline = "4000000000"
bvt = {{ mcu_advance = {a} }}
""" for a in advances)
    r = _run("[machine]\ncpus = 1\n" + doms, "--timeout", str(seconds)).report
    times = {d["name"]: d["cpu_time_ns"] for d in r["domains"]}
    total = sum(times.values())
    inv = {f"w{a}": 1 / a for a in advances}
    errs = {n: abs(times[n] / total - inv[n] / sum(inv.values())) / (inv[n] / sum(inv.values()))
            for n in inv}
    return {"worst": round(max(errs.values()), 4),
            "shares": {n: round(times[n] / total, 4) for n in inv},
            "expected": {n: round(inv[n] / sum(inv.values()), 4) for n in inv},
            "seconds": seconds}


def run(progress, quick: bool = False) -> dict:
    reads = 150_000 if quick else 500_000
    cases = []
    for model, skew, drift in itertools.product(("xen2", "percpu"), SKEWS_NS, DRIFTS_PPM):
        progress(f"time skew: {model}, configured skew {skew} ns, drift {drift} ppm")
        cases.append(time_skew_case(model, skew, drift, reads))
    progress("timer lateness (set_timer_op + block)")
    timer = timer_error_us(100 if quick else 300)
    progress("BVT shares on one PCPU (mcu_advance 10/20/40)")
    bvt = bvt_share_error(2 if quick else 4)
    return {"time_skew": cases, "timer_error_us": timer, "bvt_share_error": bvt}
