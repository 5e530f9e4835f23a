"""What tracing costs (smpxen bench --group trace): the null hypercall and
compute-bound MIPS with tracing off (no buffers), with buffers but the events
masked out (the trace points' cost when disabled: one AND), and with every class
recorded into a file (`smpxen up --trace`); interleaved rounds, medians with
spread, every figure beside the tracing-off baseline of the same run. Then a
buffer too small for the run: records are dropped and counted, and the guest's
hypercalls are not held up by it."""
from __future__ import annotations

import tempfile
from pathlib import Path

from smpxen.bench.machine import (FREQ_HZ, HYPERCALLS, HostTooBusy, RETRIES, _aggregate, _check_window,
                                  _guest_values, _loop_seconds, _spread, _window_config)
from smpxen.testing import run_up, write_config
from smpxen.xen.trace import TRC_SCHED

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
    out["trace_on_records"] = max(r["records"] for r in on_info)
    out["trace_on_lost"] = max(r["lost"] for r in on_info)
    out["trace_on_file_bytes"] = max(r["file_bytes"] for r in on_info)
    progress("trace on with a one-page buffer: a full buffer drops and counts, the guest goes on")
    small = null_hypercall("on", calls, pages=1)
    out["trace_full_buffer"] = {"buffer_records": (4096 - 32) // 32 - 1, "records": small["records"],
                                "lost": small["lost"], "null_hypercall_us": round(small["us"], 2)}
    return out
