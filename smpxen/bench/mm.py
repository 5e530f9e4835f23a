"""Memory-management benchmarks (`smpxen bench` keys mmu_update_per_s,
mmu_update_single_per_s, wrpt_faults_per_s, shootdown and preemption). Guests time their own
loops with rdtsc; shootdown figures come from the PCPU's own counters (wall time
of each reuse flush, IPIs sent and avoided). The shootdown runs each machine twice,
with Xen's TLB-flush clock and without it (SMPXEN_NO_FLUSH_CLOCK=1: every PCPU that
may cache a reused frame is flushed), in the same bench run."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from smpxen.testing import console_values, run_up, write_config

FREQ_HZ = 2_000_000_000
BATCH = 64
VICTIMS_PER_PCPU = 2
DELAY_ITERATIONS = 300_000       # ~1-3 ms of dom0 spinning between revocation and reuse


_values = console_values


def _machine(text: str, env=None, timeout: float = 300) -> dict:
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        cfg = write_config(Path(d), text)
        result = run_up("--config", cfg, "--quiet", report_dir=Path(d), timeout=timeout, env=env)
    if result.status != 0:
        raise RuntimeError(f"benchmark machine failed ({result.status}): {result.stderr.strip()}")
    return result.report


def mmu_rates(rounds: int) -> dict:
    """mmu_update entries per second, batched (64 per call) and one per call, and
    writable-page-table faults per second (each includes its revalidation)."""
    report = _machine(f"""
[machine]
cpus = 1
[clock]
freq_mhz = {FREQ_HZ // 1_000_000}
[dom0]
kernel = "mm_bench"
cmdline = "{rounds}"
""")
    v = _values(report["domains"][0])
    if v.get("errors"):
        raise RuntimeError(f"mm_bench reported errors: {v}")
    secs = {k: v[f"{k}_kcycles"] * 1024 / FREQ_HZ for k in ("batched", "single", "wrpt")}
    entries = rounds * BATCH * 2
    return {"mmu_update_per_s": round(entries / secs["batched"]),
            "mmu_update_single_per_s": round(entries / secs["single"]),
            "wrpt_faults_per_s": round(rounds * 2 / secs["wrpt"])}


def _shootdown_config(cpus: int, rounds: int, yields: int) -> str:
    victims = "".join(f"""
[[domain]]
name = "victim{cpu}_{k}"
kernel = "mm_yielder"
memory_mib = 2
cpu = {cpu}
cmdline = "{yields}"
""" for cpu in range(1, cpus) for k in range(VICTIMS_PER_PCPU))
    memory_mib = 16 + 8 + 2 * VICTIMS_PER_PCPU * (cpus - 1) + cpus
    return f"""
[machine]
cpus = {cpus}
memory_mib = {memory_mib}
time_model = "percpu"
[clock]
freq_mhz = {FREQ_HZ // 1_000_000}
[dom0]
kernel = "mm_shootbench"
memory_mib = 8
cpu = 0
cmdline = "{rounds} {memory_mib * 256} {DELAY_ITERATIONS}"
{victims}"""


def shootdown_case(cpus: int, rounds: int, flush_clock: bool, yields: int) -> dict:
    env = dict(os.environ)
    if not flush_clock:
        env["SMPXEN_NO_FLUSH_CLOCK"] = "1"
    report = _machine(_shootdown_config(cpus, rounds, yields), env=env)
    dom0 = next(d for d in report["domains"] if d["name"] == "dom0")
    v = _values(dom0)
    mm = next(p for p in report["pcpus"] if p["index"] == 0)["mm"]
    checks = mm["reuse_flush_checks"] or 1
    return {"rounds": v.get("rounds", 0),
            "latency_us": round(mm["reuse_flush_ns"] / checks / 1000, 1),
            "ipis_per_shootdown": round(mm["tlb_flush_ipis_sent"] / checks, 2),
            "ipis_avoided_per_shootdown": round(mm["tlb_flush_ipis_avoided"] / checks, 2),
            "pcpus_that_may_cache": cpus - 1}


NEIGHBOUR = """
[machine]
cpus = 1
memory_mib = {machine_mib}
{hog}
[[domain]]
name = "neighbour"
kernel = "timer_test"
cpu = 0
cmdline = "{rounds}"
"""
HOG = """
[[domain]]
name = "hog"
kernel = "batch_hog"
cpu = 0
memory_mib = {hog_mib}
cmdline = "{entries} 1"
"""


def preemption(entries: int) -> dict:
    """A domain sleeping on 3 ms timers beside one making an `entries`-entry
    mmu_update and multicall batch on the same PCPU, against the same domain alone
    (the floor of its lateness on this host, same run). The neighbour's rounds cover
    the hog's whole run (about 10 us of batch work per entry on a quiet host)."""
    hog_mib = 8 + entries * 40 * 2 // (1 << 20) + 4     # two 40-byte request lists
    rounds = max(300, entries // 300)
    alone = console_values(_machine(NEIGHBOUR.format(machine_mib=32, hog="", rounds=rounds))["domains"][0])
    report = _machine(NEIGHBOUR.format(machine_mib=hog_mib + 48, rounds=rounds,
                                       hog=HOG.format(hog_mib=hog_mib, entries=entries)), timeout=900)
    doms = {d["name"]: d for d in report["domains"]}
    hog, nb = console_values(doms["hog"]), console_values(doms["neighbour"])
    if (hog["mmu_errors"], hog["multicall_errors"], hog["batches"]) != (0, 0, 1):
        raise RuntimeError(f"batch_hog's batches went wrong: {hog}")
    freq = report["pcpus"][0]["time"]["cpu_freq_hz"]
    return {"entries": entries, "neighbour_rounds": rounds,
            "mmu_batch_s": round(hog["mmu_kcycles"] * 1024 / freq, 2),
            "multicall_batch_s": round(hog["multicall_kcycles"] * 1024 / freq, 2),
            "continuations": doms["hog"]["hypercall_results"].get("continuation", 0),
            "neighbour_late_us": {"mean": nb["mean_late_us"], "max": nb["max_late_us"]},
            "alone_late_us": {"mean": alone["mean_late_us"], "max": alone["max_late_us"]}}


def run(progress, quick: bool = False) -> dict:
    rounds = 40 if quick else 200
    progress("mmu_update batched/single and writable-page-table faults, 1 PCPU")
    out = mmu_rates(rounds)
    shoot = {}
    for cpus in (2, 4, 8):
        for clock in (True, False):
            progress(f"shootdown, {cpus} PCPUs, flush clock {'on' if clock else 'off'}")
            shoot.setdefault(f"{cpus}cpu", {})["with_clock" if clock else "without_clock"] = \
                shootdown_case(cpus, 20 if quick else 60, clock, 4000 if quick else 12000)
    out["shootdown"] = shoot
    entries = 100_000 if quick else 1_000_000
    progress(f"preemption: 3 ms timers beside {entries}-entry batches on one PCPU, and alone")
    out["preemption"] = preemption(entries)
    return out
