"""Sweep results for the plot tests, written by the sweep's own summary writer."""
import json

from smpxen.sweep.summary import write_csv

HOST = {"host.cpus": 2, "host.python": "3.11.7", "host.platform": "Linux-test"}


def write_results(d, rows, columns, plots=()):
    d.mkdir(parents=True, exist_ok=True)
    write_csv(d / "summary.csv", [{**HOST, **r} for r in rows], columns)
    (d / "sweep.json").write_text(json.dumps({"columns": columns, "plots": list(plots),
                                              "description": "test sweep"}))
    return d


def scaling_rows():
    rows = []
    for model, per_cpu in (("xen2", 100.0), ("percpu", 90.0)):
        for n in (1, 2, 4):
            for rep, jitter in enumerate((0.9, 1.0, 1.3)):
                rows.append({"machine.cpus": n, "machine.time_model": model, "repeat": rep,
                             "exit_status": 0, "pcpus": n,
                             "agg.spin_mips": per_cpu * min(n, 2) * jitter})
    rows.append({"machine.cpus": 4, "machine.time_model": "xen2", "repeat": 3, "exit_status": 1,
                 "pcpus": 4, "agg.spin_mips": 1e9})          # failed runs are not drawn
    return rows
