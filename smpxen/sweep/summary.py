"""One tidy row per run for DIR/summary.csv, from the run's report
(README.md, "The report"):

- the grid values (one column per key), `repeat`, `exit_status` (of `smpxen up`;
  empty if the sweep had to kill it), `elapsed_s` (its wall time), `error`
  (its last stderr line when it failed), `host.*` (the host that ran it: CPUs,
  Python, platform, 1-minute load average when the run ended);
- `timings_s.*`, `ipi_rtt_us_median`, `time_skew.*`, `migrations.<domain>`;
- `pcpus` (the PCPU count) and `pcpu.<counter>`: sums over pcpus[] of the numeric
  counters (hypercalls, traps, slices, domain_switches, emulated_s, host_cpu_s,
  guest_instructions_estimate, rss_bytes, uss_bytes, pss_bytes, peak_rss_bytes, ipis_sent and
  ipis_received in all and `.<kind>`, mm.*, events.*, time.calibrations/warps);
- `domains` and per domain `dom.<name>.cpu_time_ns`, `.hypercalls`, `.ended`
  (shutdown/crashed/empty), every `name=value` line of its console
  (smpxen.testing.console_values), and derived throughput (smpxen/sweep/derived.py);
- `agg.*`: totals of derived throughput over the domains (e.g. agg.spin_mips, the
  sum of the guests' rates) and agg.spin_mips_wall (their instructions over the
  machine's run_s);
- BVT: `dom.<name>.cpu_share` / `.expected_share` and `agg.bvt_worst_share_error`
  for PCPUs running several domains;
- shootdowns: `mm.flush_latency_us`, `mm.ipis_per_check`, `mm.ipis_avoided_per_check`
  (per flush-before-reuse check, as `smpxen bench --group mm`).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable

from smpxen.sweep.derived import derived_metrics
from smpxen.testing import console_values

PCPU_SUMS = ("hypercalls", "traps", "slices", "domain_switches", "emulated_s", "host_cpu_s",
             "guest_instructions_estimate", "rss_bytes", "uss_bytes", "pss_bytes", "peak_rss_bytes")
PCPU_TABLE_SUMS = ("mm", "events")
PCPU_BY_KIND = ("ipis_sent", "ipis_received")
PCPU_TIME_SUMS = ("calibrations", "warps")
# Derived metrics that add up across domains (agg.<kernel>_<metric>).
AGG_KEYS = ("mips", "instructions")
RUN_COLUMNS = ("repeat", "exit_status", "elapsed_s", "error", "host.cpus", "host.python",
               "host.platform", "host.machine", "host.load1")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _add(row: dict, key: str, v: Any) -> None:
    if _num(v):
        row[key] = row.get(key, 0) + v


def report_columns(report: dict) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k, v in (report.get("timings_s") or {}).items():
        row[f"timings_s.{k}"] = v
    row["ipi_rtt_us_median"] = report.get("ipi_rtt_us_median")
    for k, v in (report.get("time_skew") or {}).items():
        if _num(v):
            row[f"time_skew.{k}"] = v
    for name, n in (report.get("migrations") or {}).items():
        row[f"migrations.{name}"] = n
    pcpus = report.get("pcpus") or []
    row["pcpus"] = len(pcpus)
    # A PCPU that did not report in time at the end (a loaded host): its counters are
    # missing from the sums below.
    row["pcpus_without_stats"] = sum(1 for p in pcpus if "missing" in p)
    for p in pcpus:
        for k in PCPU_SUMS:
            _add(row, f"pcpu.{k}", p.get(k))
        for table in PCPU_TABLE_SUMS:
            for k, v in (p.get(table) or {}).items():
                _add(row, f"pcpu.{table}.{k}", v)
        for table in PCPU_BY_KIND:
            kinds = p.get(table) or {}
            row[f"pcpu.{table}"] = row.get(f"pcpu.{table}", 0) + sum(
                v for v in kinds.values() if _num(v))
            for kind, v in kinds.items():
                _add(row, f"pcpu.{table}.{kind}", v)
        for k in PCPU_TIME_SUMS:
            _add(row, f"pcpu.time.{k}", (p.get("time") or {}).get(k))
    domains = report.get("domains") or []
    row["domains"] = len(domains)
    agg: dict[str, float] = {}
    for d in domains:
        pre = f"dom.{d['name']}."
        row[pre + "cpu_time_ns"] = d.get("cpu_time_ns")
        row[pre + "hypercalls"] = d.get("hypercalls")
        row[pre + "ended"] = (d.get("ended") or {}).get("how")
        for k, v in console_values(d).items():
            row[pre + k] = v
        extra = derived_metrics(d, report)
        for k, v in extra.items():
            row[pre + k] = v
            if k in AGG_KEYS:
                agg[f"{d['kernel']}_{k}"] = agg.get(f"{d['kernel']}_{k}", 0) + v
        if extra:
            agg[f"{d['kernel']}_domains"] = agg.get(f"{d['kernel']}_domains", 0) + 1
    for k, v in agg.items():
        row[f"agg.{k}"] = round(v, 3) if isinstance(v, float) else v
    run_s = (report.get("timings_s") or {}).get("run_s")
    if run_s and agg.get("spin_instructions"):
        # Over the machine's whole run (first domain started to last one ended): a
        # lower bound that, unlike the sum of rates, cannot exceed what the host gave,
        # however the guests' loops overlapped.
        row["agg.spin_mips_wall"] = round(agg["spin_instructions"] / run_s / 1e6, 3)
    for k, v in row.items():           # sums of floats: 1.31, not 1.3100000000000003
        if isinstance(v, float):
            row[k] = round(v, 6)
    row.update(bvt_shares(domains))
    checks = row.get("pcpu.mm.reuse_flush_checks")
    if checks:
        # As smpxen/bench/mm.py: flush-before-reuse wall time and IPIs per check.
        row["mm.flush_latency_us"] = round(row["pcpu.mm.reuse_flush_ns"] / checks / 1000, 2)
        row["mm.ipis_per_check"] = round(row["pcpu.mm.tlb_flush_ipis_sent"] / checks, 3)
        row["mm.ipis_avoided_per_check"] = round(row["pcpu.mm.tlb_flush_ipis_avoided"] / checks, 3)
    return row


def bvt_shares(domains: list[dict]) -> dict[str, Any]:
    """Each domain's share of the CPU time of the domains on its PCPU, the share BVT
    should give it (weight 1/mcu_advance, default 10, against the others'), and
    agg.bvt_worst_share_error: the largest relative error (smpxen/bench/timebench.py
    bvt_share_error), over PCPUs with more than one domain."""
    out: dict[str, Any] = {}
    by_pcpu: dict[Any, list[dict]] = {}
    for d in domains:
        by_pcpu.setdefault(d.get("pcpu_assigned"), []).append(d)
    worst = None
    for group in by_pcpu.values():
        total = sum(d.get("cpu_time_ns") or 0 for d in group)
        if len(group) < 2 or not total:
            continue
        weights = {d["name"]: 1 / ((d.get("bvt") or {}).get("mcu_advance") or 10) for d in group}
        wsum = sum(weights.values())
        for d in group:
            share = (d.get("cpu_time_ns") or 0) / total
            expected = weights[d["name"]] / wsum
            out[f"dom.{d['name']}.cpu_share"] = round(share, 5)
            out[f"dom.{d['name']}.expected_share"] = round(expected, 5)
            err = abs(share - expected) / expected
            worst = err if worst is None else max(worst, err)
    if worst is not None:
        out["agg.bvt_worst_share_error"] = round(worst, 5)
    return out


def run_row(values: dict, repeat: int, outcome: dict) -> dict[str, Any]:
    row = dict(values)
    row["repeat"] = repeat
    row["exit_status"] = outcome.get("status")
    row["elapsed_s"] = outcome.get("elapsed_s")
    if outcome.get("status") != 0:
        lines = [ln for ln in (outcome.get("stderr") or "").splitlines() if ln.strip()]
        note = outcome.get("note")
        row["error"] = note or (lines[-1][:300] if lines else "")
    for k, v in (outcome.get("host") or {}).items():
        row[f"host.{k}"] = v
    if outcome.get("report"):
        row.update(report_columns(outcome["report"]))
    return row


def write_csv(path: Path, rows: Iterable[dict], lead: list[str]) -> None:
    """Columns: the grid keys, the run columns, then every other column sorted.
    Written to a temporary file and renamed, so readers never see half a file."""
    rows = list(rows)
    seen = set(lead) | set(RUN_COLUMNS)
    rest = sorted({k for r in rows for k in r} - seen)
    present = {k for r in rows for k in r}
    columns = list(lead) + [c for c in RUN_COLUMNS if c in present] + rest
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    os.replace(tmp, path)


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return {"True": True, "False": False}.get(text, text)


def read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return [{k: _parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
