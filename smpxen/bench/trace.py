"""What tracing costs (smpxen bench --group trace): the null hypercall and
compute-bound MIPS with tracing off (no buffers), with buffers but the events
masked out (the trace points' cost when disabled: one AND), and with every class
recorded into a file (`smpxen up --trace`); interleaved rounds, medians with
spread, every figure beside the tracing-off baseline of the same run. Then a
buffer too small for the run: records are dropped and counted, and the guest's
hypercalls are not held up by it. Last, what the trace shows of the time models'
residual skew: an event ping-pong between PCPU 0 and PCPU 1 traced under xen2 and
percpu, with PCPU 1's counter drifting 0 and 200 ppm, every IPI paired with its
receive on the common time axis (smpxen/trace/timeline.py), over the whole run
and per half second; the skew-free one-way trip stands beside a bare message
between two processes (its floor)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from smpxen.bench.machine import (FREQ_HZ, HYPERCALLS, HostTooBusy, RETRIES, _aggregate, _check_window,
                                  _guest_values, _loop_seconds, _spread, _window_config, zmq_floor_rtt_us)
from smpxen.testing import run_up, write_config
from smpxen.trace.records import read_records
from smpxen.trace.timeline import analyse
from smpxen.xen.arch_x86_32 import PAGE_SIZE
from smpxen.xen.trace import TRC_SCHED, records_per_buffer

MODES = {                    # name -> (trace_pages, mask, --trace)
    "off": (0, None, False),
    "masked": (256, TRC_SCHED, False),      # buffers, but no hypercall or IPI class
    "on": (256, None, True),                # every class, read into a file while it runs
}


def _run(text: str, mode: str, pages: int | None = None, timeout: float = 300):
    trace_pages, mask, to_file = MODES[mode]
    pages = trace_pages if pages is None else pages
    if pages:
        text = text.replace("[machine]\n", f"[machine]\ntrace_pages = {pages}\n", 1)
        if mask is not None:
            text = text.replace("[machine]\n", f"[machine]\ntrace_mask = {mask}\n", 1)
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        cfg = write_config(Path(d), text)
        extra = ["--trace", Path(d) / "trace.bin"] if to_file else []
        result = run_up("--config", cfg, "--quiet", *extra, report_dir=Path(d), timeout=timeout)
        size = (Path(d) / "trace.bin").stat().st_size if to_file else 0
    if result.status != 0:
        raise RuntimeError(f"benchmark machine ({mode}) failed ({result.status}): {result.stderr.strip()}")
    return result.report, size


def _hypercall_config(calls: int) -> str:
    return (f"[machine]\ncpus = 1\n[clock]\nfreq_mhz = {FREQ_HZ // 1_000_000}\n"
            f"[[domain]]\nname = \"hc\"\nkernel = \"hypercall_loop\"\ncmdline = \"{calls}\"\n")


def skew(model: str, drift_ppm: float, round_trips: int, window_ms: int = 500) -> dict:
    """An event ping-pong between PCPU 0 and PCPU 1 traced (ipi and time classes),
    every IPI placed on the common axis: inversions over the run and per window
    (with the offset and one-way trip from the fastest trip each way)."""
    text = f"""
[machine]
cpus = 2
time_model = "{model}"
trace_mask = "ipi,time"
[[clock.pcpu]]
index = 1
drift_ppm = {drift_ppm}
[[domain]]
name = "responder"
kernel = "evtchn_pingpong"
cpu = 0
cmdline = "self={{domid}} peer=2 count={round_trips}"
[[domain]]
name = "initiator"
kernel = "evtchn_pingpong"
cpu = 1
cmdline = "self={{domid}} peer=1 count={round_trips}"
"""
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        cfg = write_config(Path(d), text)
        result = run_up("--config", cfg, "--quiet", "--trace", Path(d) / "t.bin", report_dir=Path(d),
                        timeout=300)
        if result.status != 0:
            raise RuntimeError(f"skew machine ({model}, {drift_ppm} ppm) failed: {result.stderr.strip()}")
        a = analyse(read_records(str(Path(d) / "t.bin")), window_ms * 1_000_000)
    inv = a["inversions"]
    windows = [{k: w[k] for k in ("from_s", "inverted", "max_inversion_us", "offset_us", "one_way_us")}
               | {"ipis": sum(w["ipis"])} for w in a["windows"] if w["pcpus"] == [0, 1]]
    offsets = [w["offset_us"] for w in windows if w["offset_us"] is not None]
    trips = [w["one_way_us"] for w in windows if w["one_way_us"] is not None]
    return {"model": model, "drift_ppm": drift_ppm, "round_trips": round_trips,
            "run_s": result.report["timings_s"].get("run_s"), "records_lost": result.report["trace"]["lost"],
            "unmatched_ipis": a["unmatched_ipis"], "ipi_pairs": inv["placed_pairs"],
            "inverted": inv["inverted"], "inverted_share": inv["inverted_share"],
            "max_inversion_us": round(inv["max_inversion_ns"] / 1000, 1),
            "offset_us_first": offsets[0] if offsets else None,
            "offset_us_last": offsets[-1] if offsets else None,
            "offset_us_max_abs": max(offsets, key=abs) if offsets else None,
            "fastest_one_way_us": min(trips) if trips else None,
            "window_ms": window_ms, "windows": windows}


def null_hypercall(mode: str, calls: int, pages: int | None = None) -> dict:
    report, size = _run(_hypercall_config(calls), mode, pages)
    lost = sum((p.get("trace") or {}).get("lost", 0) for p in report["pcpus"])
    return {"us": _loop_seconds(report["domains"][0]) / calls * 1e6, "lost": lost,
            "file_bytes": size, "records": (report.get("trace") or {}).get("records", 0)}


def mips(mode: str, len_ms: int, start_ms: int = 2000) -> float:
    for attempt in range(RETRIES):
        report, _ = _run(_window_config(1, start_ms, len_ms), mode)
        runs = [_guest_values(d) for d in report["domains"]]
        try:
            _check_window(max(r["begin_us"] for r in runs) / 1000 - start_ms, len_ms, "1 PCPU")
        except HostTooBusy:
            if attempt == RETRIES - 1:
                raise
            continue
        return _aggregate(runs, lambda r: (r["end_us"] - r["begin_us"]) / 1e6)["mips"]


def run(progress, quick: bool = False) -> dict:
    rounds = 3 if quick else 5
    calls = HYPERCALLS // (5 if quick else 2)
    len_ms = 500 if quick else 1500
    hc = {m: [] for m in MODES}
    mp = {m: [] for m in MODES}
    on_info = []
    for i in range(rounds):          # interleaved: the host's load drifts
        for mode in MODES:
            progress(f"trace {mode}: null hypercall x{calls} and the spin loop over {len_ms} ms, "
                     f"round {i + 1}/{rounds}")
            r = null_hypercall(mode, calls)
            hc[mode].append(r["us"])
            if mode == "on":
                on_info.append(r)
            mp[mode].append(mips(mode, len_ms))
    out = {"trace_rounds": rounds, "trace_hypercalls": calls, "trace_mips_window_ms": len_ms}
    for mode in MODES:
        out[f"null_hypercall_us_trace_{mode}"] = _spread(hc[mode])
        out[f"mips_1cpu_trace_{mode}"] = _spread(mp[mode])
    base_hc, base_mips = out["null_hypercall_us_trace_off"]["median"], out["mips_1cpu_trace_off"]["median"]
    for mode in ("masked", "on"):
        out[f"null_hypercall_trace_{mode}_vs_off"] = round(out[f"null_hypercall_us_trace_{mode}"]["median"] / base_hc, 3)
        out[f"mips_trace_{mode}_vs_off"] = round(out[f"mips_1cpu_trace_{mode}"]["median"] / base_mips, 3)
        # A busy host only slows a run down: the fastest of each mode is its least disturbed.
        out[f"null_hypercall_trace_{mode}_vs_off_best"] = round(min(hc[mode]) / min(hc["off"]), 3)
        out[f"mips_trace_{mode}_vs_off_best"] = round(max(mp[mode]) / max(mp["off"]), 3)
    out["trace_on_records"] = max(r["records"] for r in on_info)
    out["trace_on_lost"] = max(r["lost"] for r in on_info)
    out["trace_on_file_bytes"] = max(r["file_bytes"] for r in on_info)
    progress("trace on with a one-page buffer: a full buffer drops and counts, the guest goes on")
    small = null_hypercall("on", calls, pages=1)
    out["trace_full_buffer"] = {"buffer_records": records_per_buffer(PAGE_SIZE) - 1, "records": small["records"],
                                "lost": small["lost"], "null_hypercall_us": round(small["us"], 2)}
    # Long enough for percpu's first calibrations (every 1 s epoch) to show.
    round_trips = 4000 if quick else 10000
    progress("trace skew: the floor, a bare one-way message between two processes")
    out["trace_skew_zmq_floor_oneway_us"] = round(zmq_floor_rtt_us()["median"] / 2, 1)
    out["trace_skew"] = []
    for model in ("xen2", "percpu"):
        for drift in (0.0, 200.0):
            progress(f"trace skew: {model}, PCPU 1 drifting {drift:g} ppm, {round_trips} round trips")
            out["trace_skew"].append(skew(model, drift, round_trips))
    return out
