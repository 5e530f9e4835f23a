"""Scheduling on one PCPU (Xen's common/schedule.c): picking the next domain,
switching the core to it, the per-PCPU timers' actions, and the hypercall side of
yield and block. The BVT arithmetic itself is smpxen/sched/; this module moves
the CPU state around it."""
from __future__ import annotations

from smpxen.arch import x86
from smpxen.pcpu import vcpuctx
from smpxen.pcpu.clock import PERIODIC
from smpxen.sched.flags import DFM_BLOCKED, DFM_RUNNING, SCHED_OWNED_MASK
from smpxen.xen.trace import (IDLE_DOMAIN_ID, TRC_SCHED_BLOCK, TRC_SCHED_DOM_REM, TRC_SCHED_DOM_TIMER_FN,
                               TRC_SCHED_FALLBACK_TIMER_FN, TRC_SCHED_SWITCH, TRC_SCHED_T_TIMER_FN,
                               TRC_SCHED_YIELD)
from smpxen.xen.xen import VIRQ_TIMER

EXIT_RESCHED = "resched"
INITIAL_EFLAGS = x86.EFLAGS_IF | x86.EFLAGS_RESERVED1


def yield_current(pcpu) -> None:
    pcpu.trace.trace(TRC_SCHED_YIELD, pcpu.current.domid)
    pcpu.sched.yield_(pcpu.current.domid, pcpu.clock.now())
    pcpu.exit = EXIT_RESCHED


def block_current(pcpu) -> None:
    pcpu.trace.trace(TRC_SCHED_BLOCK, pcpu.current.domid)
    pcpu.sched.block(pcpu.current.domid, pcpu.clock.now())
    pcpu.exit = EXIT_RESCHED


def request_resched(pcpu) -> None:
    """Leave the running slice and reschedule (safe inside the hook)."""
    pcpu.exit = EXIT_RESCHED
    pcpu.core.stop()


def next_deadline(pcpu) -> int | None:
    """Earliest system-time deadline: the scheduler's or a timer's. An idle PCPU
    leaves out the periodic timers, which would only wake it to do nothing."""
    idle = pcpu.current is None
    sched = pcpu.sched.idle_deadline() if idle else pcpu.sched.next_deadline()
    cands = [t for t in (sched, pcpu.clock.timers.next_deadline(PERIODIC if idle else ()))
             if t is not None]
    return min(cands) if cands else None


def reschedule(pcpu) -> None:
    now = pcpu.clock.now()
    prev = pcpu.current
    nxt_id, _deadline = pcpu.sched.schedule(now, pcpu.events.pending)
    nxt = pcpu.vcpus.get(nxt_id) if nxt_id is not None else None
    if nxt is not prev:
        switch_to(pcpu, nxt)
    for v in [v for v in pcpu.vcpus.values() if v.ended and v is not pcpu.current]:
        if pcpu.sched.has_domain(v.domid):
            pcpu.ended_cpu_time[v.domid] = pcpu.sched.cpu_time(v.domid)
            pcpu.sched.remove_domain(v.domid)
            pcpu.trace.trace(TRC_SCHED_DOM_REM, v.domid)
            v.info.flags &= ~(DFM_RUNNING | DFM_BLOCKED)    # off every run queue for good
    mirror_domain_state(pcpu)


def switch_to(pcpu, nxt) -> None:
    """Save the running domain's CPU state and load nxt's (None: go idle)."""
    prev, core = pcpu.current, pcpu.core
    pcpu.trace.trace(TRC_SCHED_SWITCH, IDLE_DOMAIN_ID if prev is None else prev.domid, 0,
                     IDLE_DOMAIN_ID if nxt is None else nxt.domid, 0)
    if prev is not None:
        # Xen flushes writable page tables on the way out; an ended domain's too, so
        # no slot of it is left for the next domain (its frames may be torn down).
        pcpu.paging.deschedule()
        # The loop's resume point is authoritative (a fresh entry or a bounce may not
        # have run yet, and emu_start only sets EIP when it starts). An ended domain's
        # state is kept for DOM0_GETDOMAININFO, as Xen keeps a crashed domain's.
        core.set_eip(pcpu.resume_eip)
        prev.context = core.save()
    pcpu.set_current(nxt)
    pcpu.counts["switches"] += 1
    if nxt is None:
        return
    if prev is None:
        pcpu.clock.resume_ticks()
    nxt.pcpus_ran.add(pcpu.index)
    nxt.info.ran_mask |= 1 << (pcpu.index & 31)     # frames freed later: whose code may we hold
    update_dom_time(pcpu, nxt)          # Xen stamps time on every schedule-in
    if nxt.context is None:
        pcpu.resume_eip = vcpuctx.first_entry(pcpu, nxt)
    else:
        pcpu.resume_eip = core.restore(nxt.context)
        nxt.context = None
    pcpu.mem.cr3 = core.cr3()
    pcpu.paging.switched()


def mirror_domain_state(pcpu) -> None:
    """Copy each hosted domain's scheduler flags and CPU time into the shared
    domain table, where DOM0_GETDOMAININFO on any PCPU reads them."""
    sched, now = pcpu.sched, pcpu.clock.now()
    for domid, v in pcpu.vcpus.items():
        if sched.has_domain(domid):
            # Only the scheduler's bits: CONSTRUCTED, PRIVILEGED, DYING are not its own.
            v.info.flags = (v.info.flags & ~SCHED_OWNED_MASK) | (sched.flags(domid) & SCHED_OWNED_MASK)
            v.info.cpu_time_ns = sched.cpu_time(domid, now)


def update_dom_time(pcpu, vcpu) -> None:
    """Xen's update_dom_time: publish the time in the domain's shared_info."""
    pcpu.clock.publish(vcpu.shared, vcpu.time_offset, pcpu.sched.cpu_time(vcpu.domid, pcpu.clock.now()))


def run_timers(pcpu) -> None:
    """What the PCPU's fired timers do to domains."""
    for key in pcpu.clock.due():
        v = pcpu.current
        if key == "tick":            # Xen's t_timer: time update + VIRQ_TIMER to the runner
            pcpu.trace.trace(TRC_SCHED_T_TIMER_FN)
            if v is not None and pcpu.sched.runnable(v.domid):
                update_dom_time(pcpu, v)
                pcpu.events.send_virq(v.domid, VIRQ_TIMER)
        elif key == "fallback":      # time update only
            pcpu.trace.trace(TRC_SCHED_FALLBACK_TIMER_FN)
            if v is not None:
                update_dom_time(pcpu, v)
        else:                        # ("domain", domid): its set_timer_op timer
            v = pcpu.vcpus.get(key[1])
            pcpu.trace.trace(TRC_SCHED_DOM_TIMER_FN, key[1])
            if v is not None and not v.ended:
                pcpu.clock.domain_timer_fired(v)
                update_dom_time(pcpu, v)
                pcpu.events.send_virq(v.domid, VIRQ_TIMER)
