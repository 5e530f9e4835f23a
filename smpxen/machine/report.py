"""The machine's report (`smpxen up --report FILE`, and what `smpxen bench` and the
tests read): the configuration, timings, each PCPU's statistics, and every domain's
record, those destroyed at run time included. The keys are listed in README.md."""
from __future__ import annotations

import statistics

from smpxen import __version__


def add_domain_stats(rec, stats: dict) -> None:
    """Fold one PCPU's figures for a domain into its record (smpxen/machine/machine.py
    DomainRecord; a domain that moved has figures on several PCPUs): the PCPUs it ran
    on, counts summed, histograms key by key."""
    rec.ran_on.update(stats.pop("pcpus_ran", []))
    for k, v in stats.items():
        if isinstance(v, dict):
            total = rec.stats.setdefault(k, {})
            for name, n in v.items():
                total[name] = total.get(name, 0) + n
        else:
            rec.stats[k] = rec.stats.get(k, 0) + v


def build_report(m, status: int) -> dict:
    """The report of machine `m` (smpxen/machine/machine.py Machine) that ended with
    exit status `status`. Folds each PCPU's per-domain figures into the domains'
    records (a domain that moved has figures on several PCPUs)."""
    pcpus = []
    for i in range(m.cfg.cpus):
        st = dict(m.pcpu_stats.get(i, {"index": i, "pid": m.pcpu_pids.get(i),
                                       "missing": "this PCPU sent no statistics"}))
        doms = st.pop("domains", {})
        for domid, ds in doms.items():
            rec = m.records.get(int(domid))
            if rec:
                rec.ran_on.add(i)
                add_domain_stats(rec, ds)
        pcpus.append(st)
    rtts = [p["ipi_rtt_us"]["median"] for p in pcpus
            if isinstance(p.get("ipi_rtt_us"), dict) and p["ipi_rtt_us"].get("median") is not None]
    return {
        "smpxen_version": __version__,
        "config": m.cfg.to_dict(),
        "exit_status": status,
        "failure": m.failure,
        "timings_s": {k: round(v, 4) for k, v in m.timings.items()},
        "ipi_rtt_us_median": round(statistics.median(rtts), 2) if rtts else None,
        "time_skew": m.time_probe.report() if m.time_probe else None,
        "migrations": {name: m.moves for name, m in m.migrators.items()},
        "trace": m.trace_summary,
        "pcpus": pcpus,
        "control_endpoint": m.control.endpoint.address if m.control is not None else None,
        "domains": [{
            "id": r.domid, "name": r.name, "kernel": r.kernel, "memory_bytes": r.memory_bytes,
            "privileged": r.privileged, "cmdline": r.cmdline, "pcpu_assigned": r.pcpu,
            "pcpus_ran_on": sorted(r.ran_on),
            "pcpu_pids": sorted({m.pcpu_pids.get(i) for i in r.ran_on}),
            "console": r.console if r.destroyed else list(m.console.lines.get(r.domid, ())),
            "console_lines_dropped": r.console_dropped[0] if r.destroyed else
            m.console.lines_dropped.get(r.domid, 0),
            "console_bytes_dropped": r.console_dropped[1] if r.destroyed else
            m.console.bytes_dropped.get(r.domid, 0),
            "ended": r.ended, "destroyed": r.destroyed, "hypercalls": r.stats.get("hypercalls", 0),
            "hypercall_results": r.stats.get("hypercall_results", {}),
            "hypercalls_by_number": r.stats.get("hypercalls_by_number", {}),
            "cpu_time_ns": r.stats.get("cpu_time_ns", 0), "bvt": r.bvt,
        } for r in sorted(m.records.values(), key=lambda r: r.domid) + m.past_records],
    }
