"""What a PCPU reports when the machine halts it (the report's pcpus[] entries and
the per-domain counters its domains' entries are merged from)."""
from __future__ import annotations

import os
import resource

import psutil

from smpxen.measure import summary


def domain_cpu_time(pcpu, domid: int) -> int:
    """CPU time (ns) a domain hosted here has had, ended ones included."""
    if pcpu.sched is None or not pcpu.sched.has_domain(domid):
        return pcpu.ended_cpu_time.get(domid, 0)
    return pcpu.sched.cpu_time(domid, pcpu.clock.now())


def _memory(proc) -> dict:
    """RSS, and what of it is this PCPU's own: USS (pages no other process maps) and
    PSS (shared pages divided among their sharers). A PCPU is a fork of the machine,
    so the interpreter and the libraries stay shared until written."""
    m = proc.memory_full_info()
    return {"rss_bytes": m.rss, "uss_bytes": m.uss, "pss_bytes": m.pss}


def pcpu_stats(pcpu) -> dict:
    proc = psutil.Process()
    cpu = proc.cpu_times()
    counts, mailbox = pcpu.counts, pcpu.mailbox
    return {
        "index": pcpu.index,
        "pid": os.getpid(),
        "hypercalls": counts["hypercalls"],
        "traps": counts["traps"],
        "slices": counts["slices"],
        "domain_switches": counts["switches"],
        "mm": pcpu.paging.stats(),
        "events": dict(pcpu.events.counts),
        "ctrl_if": dict(pcpu.ctrl_if.counts),
        "ipis_sent": mailbox.counts["ipis_sent"],
        "ipis_received": mailbox.counts["ipis_received"],
        "ipi_rtt_us": summary(pcpu.ipi_rtt_us, digits=3),
        "ipi_rtt_steps_us": {k: summary(v, digits=3)["median"] for k, v in pcpu.ipi_steps_us.items()},
        "timer_wake_us": {k: summary(v) for k, v in pcpu.clock.wake_steps.items()},
        "event_wake_us": {k: summary(v) for k, v in pcpu.events.wake_steps.items()},
        "longest_charge_us": round(pcpu.sched.longest_charge / 1000, 1) if pcpu.sched else None,
        "emulated_s": round(pcpu.emulated_s, 6),
        "guest_instructions": None,
        "guest_instructions_estimate": int(pcpu.emulated_s * pcpu.instr_rate),
        "guest_instructions_estimate_method":
            "emulated seconds x this core's measured ALU-loop rate (an upper bound)",
        "alu_loop_rate_mips": round(pcpu.instr_rate / 1e6, 1),
        "time": pcpu.clock.describe(),
        "trace": pcpu.trace.summary(),
        "host_cpu_s": round(cpu.user + cpu.system, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        **_memory(proc),
        "domains": {d: {"hypercalls": v.hypercalls, "slices": v.slices,
                        "cpu_time_ns": domain_cpu_time(pcpu, d), "pcpus_ran": sorted(v.pcpus_ran),
                        **v.hypercall_stats()}
                    for d, v in pcpu.vcpus.items()},
    }
