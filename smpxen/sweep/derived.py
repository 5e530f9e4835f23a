"""Throughput a bundled guest's console lines imply, for the summary.

spin (smpxen/guests/asm/spin.s): N iterations of a 4-instruction ALU loop (N = the
first number of its command line, default 50 000 000), timed by the guest as
loop_kcycles (1024 cycles) of its PCPU's counter. Its rate in MIPS is
4 N / (loop_kcycles * 1024 / f), with f the frequency of that counter as
configured (config.clocks[pcpu], drift included), which is what the guest's rdtsc
ticks at. The summary's agg.spin_mips adds the guests' rates, as
smpxen/bench/machine.py does for smpxen_mips_2cpu: a fair total when the loops
overlap in time, which they do when every guest starts at boot and runs as long.
"""
from __future__ import annotations

import re

SPIN_DEFAULT_ITERATIONS = 50_000_000
SPIN_INSTRUCTIONS_PER_ITERATION = 4


def _first_number(cmdline: str) -> int | None:
    m = re.search(r"\d+", cmdline or "")
    return int(m.group()) if m else None


def _console_value(domain: dict, key: str) -> int | None:
    for line in domain.get("console") or ():
        k, sep, v = line.partition("=")
        if sep and k == key and v.lstrip("-").isdigit():
            return int(v)
    return None


def spin(domain: dict, report: dict) -> dict:
    kcycles = _console_value(domain, "loop_kcycles")
    if not kcycles:
        return {}
    iterations = _first_number(domain.get("cmdline", "")) or SPIN_DEFAULT_ITERATIONS
    clocks = (report.get("config") or {}).get("clocks") or []
    pcpu = domain.get("pcpu_assigned")
    if pcpu is None or pcpu >= len(clocks):
        return {}
    clock = clocks[pcpu]
    hz = clock["freq_hz"] * (1 + clock.get("drift_ppm", 0.0) / 1e6)
    seconds = kcycles * 1024 / hz
    instructions = SPIN_INSTRUCTIONS_PER_ITERATION * iterations
    return {"instructions": instructions, "loop_s": round(seconds, 6),
            "mips": round(instructions / seconds / 1e6, 3)}


DERIVED = {"spin": spin}


def derived_metrics(domain: dict, report: dict) -> dict:
    fn = DERIVED.get(domain.get("kernel"))
    return fn(domain, report) if fn else {}
