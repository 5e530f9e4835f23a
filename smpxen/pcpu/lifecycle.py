"""Domains arriving on, leaving and moving off a PCPU: the start of day (the
machine's START: the PCPU's scheduler gets its domains, time comes up), a
domain's end (Xen's domain_shutdown and domain_crash), and the moves queued by
DOM0_PINCPUDOMAIN or the machine, done between slices (smpxen/pcpu/migration.py)."""
from __future__ import annotations

from smpxen.ipc import messages as M
from smpxen.pcpu import migration
from smpxen.pcpu.schedule import EXIT_RESCHED
from smpxen.pcpu.vcpu import Vcpu
from smpxen.sched.bvt import (MCU_ADVANCE, SCHED_INFO_PUT, WARPL_DEFAULT_MS, WARPU_DEFAULT_MS,
                               BVTAdjdom)
from smpxen.sched.core import SchedCore
from smpxen.sched.flags import DFM_CRASHED, DFM_SHUTDOWN
from smpxen.shm.domains import DS_CRASHED, DS_SHUTDOWN
from smpxen.xen.structs import SharedInfo
from smpxen.xen.trace import SHUTDOWN_CRASH, TRC_SCHED_DOM_ADD, TRC_SCHED_SHUTDOWN
from smpxen.xen.xen import SHUTDOWN_NAMES, VIRQ_DOM_EXC

PING_COUNT = 32      # IPI round trips measured at the start of day (the report's ipi_rtt_us)
PING_STEPS = ("wire_out", "callee_handoff", "wire_back", "caller_handoff")


def start(pcpu, spec: dict) -> None:
    """START: bring up time, then host the domains the machine placed here, each
    with its BVT parameters, unpaused."""
    pcpu.mailbox.connect_peers(pcpu.nr_pcpus)
    pcpu.clock.start()
    pcpu.trace.time_up()                 # records can be placed on system time from here
    for line in spec.get("printk", ()):       # what the machine printed while it built the domains
        pcpu.printk.printk(line)
    now = pcpu.clock.now()
    sched = pcpu.sched = SchedCore(cpu=pcpu.index, now=now)
    for domid in spec["domains"]:
        info = pcpu.domains.find(domid)
        shared = SharedInfo.from_buffer(pcpu.ram.mem, info.shared_info_mfn << 12)
        pcpu.vcpus[domid] = Vcpu(domid, info, shared)
        sched.add_domain(domid, now, paused=True)
        pcpu.trace.trace(TRC_SCHED_DOM_ADD, domid)
        params = spec.get("bvt", {}).get(domid)
        if params:
            rc = sched.adjdom(domid, SCHED_INFO_PUT, BVTAdjdom(
                mcu_adv=params.get("mcu_advance", MCU_ADVANCE),
                warpback=params.get("warpback", 0), warpvalue=params.get("warp_value", 0),
                warpl=params.get("warpl_ms", WARPL_DEFAULT_MS),
                warpu=params.get("warpu_ms", WARPU_DEFAULT_MS)))
            if rc:
                raise ValueError(f"BVT parameters {params} for domain {domid}: error {rc}")
        sched.ctrl_unpause(domid, now)
    pcpu.started = True
    if pcpu.nr_pcpus > 1 and spec.get("measure_ipi", True):
        peer = (pcpu.index + 1) % pcpu.nr_pcpus
        for _ in range(PING_COUNT):
            *steps, total = pcpu.mailbox.timed_ping(peer)
            pcpu.ipi_rtt_us.append(total / 1000)
            for name, ns in zip(PING_STEPS, steps):
                pcpu.ipi_steps_us.setdefault(name, []).append(ns / 1000)


def end_domain(pcpu, vcpu: Vcpu, how: str, code: int, detail: str) -> None:
    """The domain ends ("shutdown" with a reason code, or "crashed"): it leaves the
    scheduler, the machine is told, and Domain-0 gets VIRQ_DOM_EXC."""
    if vcpu.ended:
        return
    vcpu.ended = how
    vcpu.detail = detail
    pcpu.trace.trace(TRC_SCHED_SHUTDOWN, vcpu.domid, code if how == "shutdown" else SHUTDOWN_CRASH)
    pcpu.console.domain_ended(vcpu)
    now = pcpu.clock.now()
    if how == "shutdown":
        vcpu.info.state = DS_SHUTDOWN
        vcpu.info.shutdown_code = code
        vcpu.info.flags |= DFM_SHUTDOWN       # the scheduler may forget it before it mirrors
        pcpu.sched.mark_shutdown(vcpu.domid, now)
        detail = detail or SHUTDOWN_NAMES.get(code, f"reason {code}")
    else:
        vcpu.info.state = DS_CRASHED
        vcpu.info.flags |= DFM_CRASHED
        pcpu.sched.mark_crashed(vcpu.domid, now)
    pcpu.mailbox.send_machine(M.DOMAIN_ENDED, pcpu.index, vcpu.domid, how, code, detail)
    pcpu.printk.printk(f"domain {vcpu.domid} {'shut down' if how == 'shutdown' else how}: "
                       f"{detail.splitlines()[0] if detail else ''}")
    if vcpu.domid != 0:      # Xen's domain_shutdown/domain_crash tell Domain-0
        pcpu.events.send_virq(0, VIRQ_DOM_EXC)
    if vcpu is pcpu.current:
        pcpu.exit = EXIT_RESCHED


def do_pending_migrations(pcpu) -> None:
    while pcpu.pending_migrations:
        domid, target = pcpu.pending_migrations.pop(0)
        if not migration.migrate_out(pcpu, domid, target):
            pcpu.mailbox.send_machine(M.MIGRATE_FAILED, pcpu.index, domid, target)
