"""Generic per-PCPU scheduler core (Xen 2.0 ``xen/common/schedule.c``).

Why a separate layer: Xen splits scheduling into a policy (BVT) that only
orders domains, and a generic core that owns the domain run-state flags,
CPU-time accounting and the preemption timer (``s_timer``).  smpxen keeps that
split so the PCPU process talks to one object per CPU and the policy stays a
faithful port.

No clock, no threads, no I/O.  Every call takes ``now`` (integer ns of system
time), and nothing is ever run behind the caller's back:

* Where Xen would raise SCHEDULE_SOFTIRQ, the core records a pending
  reschedule and the call returns ``Resched(Action.NOW)``; the caller must
  then call :meth:`SchedCore.schedule` (between two emulation slices) and
  switch to the domain it returns.
* Where Xen would pull ``s_timer`` earlier, the call returns
  ``Resched(Action.AT, t)`` and :meth:`SchedCore.next_deadline` reflects it.
* Timers (slice end, BVT warp/unwarp) are deadlines: run the current domain
  until :meth:`next_deadline` at the latest, then :meth:`poll`; if it returns
  True, :meth:`schedule`.

Semantics worth knowing, all inherited from Xen 2.0:

* Domains are created ctrl-paused (DF_CTRLPAUSE); :meth:`ctrl_unpause` starts them.
* Blocking, pausing, shutting down or crashing the *current* domain does not
  take it off the CPU by itself: it stays :attr:`current` until the next
  :meth:`schedule` (Xen's ``domain_sleep`` spins for exactly that).
* A blocked ``prev`` whose event is already pending when :meth:`schedule`
  runs is unblocked there and stays runnable (the block/wake race check).
* ``cpu_time`` is charged only at :meth:`schedule`; pass ``now`` to
  :meth:`cpu_time` to include the running stint.

One deliberate deviation: Xen's ``domain_wake`` clears DF_MIGRATED even when
the domain is not runnable, so a domain moved while blocked or paused keeps
its old CPU's avt (meaningless against the new SVT).  Here DF_MIGRATED stays
set until the policy really wakes the domain, so avt is always reset to the
new CPU's SVT.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, NamedTuple, Optional

from .bvt import CTX_ALLOW_DEFAULT, ESRCH, BVTAdjdom, BVTScheduler
from .flags import (DFM_BLOCKED, DFM_CRASHED, DFM_CTRLPAUSE, DFM_MIGRATED,
                    DFM_RUNNING, DFM_SHUTDOWN, domain_runnable)

__all__ = ["Action", "Resched", "RESCHED_NONE", "RESCHED_NOW", "DomSched", "SchedCore"]


class Action(IntEnum):
    """What a state change asks of the caller."""

    NONE = 0  #: nothing to do
    NOW = 1   #: call schedule() before resuming the current domain
    AT = 2    #: the current slice now ends at ``Resched.at`` (already applied)


class Resched(NamedTuple):
    action: Action
    at: Optional[int] = None


RESCHED_NONE = Resched(Action.NONE)
RESCHED_NOW = Resched(Action.NOW)


@dataclass
class DomSched:
    """The generic-scheduler fields of ``struct domain`` for one domain."""

    flags: int = 0      # DF_* bits (only the scheduler-owned ones are maintained here)
    pausecnt: int = 0   # domain_pause() nesting count
    lastschd: int = 0   # ns: when it was last put on the CPU
    cpu_time: int = 0   # ns charged while it was current (up to the last schedule())


class SchedCore:
    """One PCPU's scheduler: run-state flags, accounting, ``s_timer``, policy.

    ``current`` is the domain id on the CPU, ``None`` for the idle domain.
    Domain ids are ints; a domain lives on exactly one core at a time (move it
    with :meth:`migrate_out` / :meth:`migrate_in`).
    """

    def __init__(self, cpu: int = 0, now: int = 0,
                 policy: Optional[BVTScheduler] = None,
                 ctx_allow: int = CTX_ALLOW_DEFAULT) -> None:
        self.cpu = cpu
        self.policy = policy if policy is not None else BVTScheduler(ctx_allow)
        self._doms: dict[int, DomSched] = {}
        self._curr: Optional[int] = None
        self._idle_lastschd = now
        self._idle_time = 0
        # The most wall time charged to a domain at once (ns): a run stretched by the
        # host keeping the PCPU process off its CPUs is charged whole, as Xen charges
        # NOW() differences, and this says how much one such run can skew shares.
        self.longest_charge = 0
        self._slice_deadline: Optional[int] = None
        # schedulers_start() fires s_timer immediately: first thing, schedule.
        self._resched_at: Optional[int] = now

    # -- queries -------------------------------------------------------------------

    @property
    def current(self) -> Optional[int]:
        return self._curr

    @property
    def slice_deadline(self) -> Optional[int]:
        """End of the current slice (``s_timer``), None once it has fired."""
        return self._slice_deadline

    @property
    def need_resched(self) -> bool:
        """True if SCHEDULE_SOFTIRQ is "raised": call :meth:`schedule`."""
        return self._resched_at is not None

    @property
    def svt(self) -> int:
        return self.policy.svt

    def domains(self) -> list[int]:
        return list(self._doms)

    def has_domain(self, domid: int) -> bool:
        return domid in self._doms

    def state(self, domid: int) -> DomSched:
        return self._doms[domid]

    def flags(self, domid: int) -> int:
        """DF_* word (scheduler-owned bits: see ``flags.SCHED_OWNED_MASK``)."""
        return self._doms[domid].flags

    def pausecnt(self, domid: int) -> int:
        return self._doms[domid].pausecnt

    def lastschd(self, domid: Optional[int]) -> int:
        return self._idle_lastschd if domid is None else self._doms[domid].lastschd

    def runnable(self, domid: int) -> bool:
        st = self._doms[domid]
        return domain_runnable(st.flags, st.pausecnt)

    def cpu_time(self, domid: int, now: Optional[int] = None) -> int:
        """ns charged to ``domid``; with ``now``, include its current stint."""
        st = self._doms[domid]
        extra = now - st.lastschd if (now is not None and self._curr == domid) else 0
        return st.cpu_time + extra

    def idle_time(self, now: Optional[int] = None) -> int:
        """ns the idle domain was charged (same rules as :meth:`cpu_time`)."""
        extra = now - self._idle_lastschd if (now is not None and self._curr is None) else 0
        return self._idle_time + extra

    def next_deadline(self) -> Optional[int]:
        """When the caller must next :meth:`poll` at the latest.

        If a reschedule is already pending this is the time it was requested
        (so it is ≤ any later ``now``: "overdue").  Otherwise the earliest of
        the slice end and the policy's timers; None if nothing is armed.
        """
        if self._resched_at is not None:
            return self._resched_at
        cands = [t for t in (self._slice_deadline, self.policy.next_timer()) if t is not None]
        return min(cands) if cands else None

    def idle_deadline(self) -> Optional[int]:
        """:meth:`next_deadline` for a CPU that may sleep: while the idle task runs
        with nothing else on the run queue, the end of its slice would only pick
        the idle task again (Xen reschedules every ctx_allow regardless), so only
        the policy's timers count; a wake-up raises a reschedule anyway."""
        if self._curr is None and self._resched_at is None and \
                all(d is None for d in self.policy.runqueue):
            return self.policy.next_timer()
        return self.next_deadline()

    # -- timers ----------------------------------------------------------------------

    def poll(self, now: int, slop: int = 0) -> bool:
        """Fire every timer due by ``now + slop``; True if :meth:`schedule` is due.

        ``slop`` is Xen's TIMER_SLOP idea (``bvt.TIME_SLOP`` = 50 µs): fire
        timers that are nearly due together rather than wake up again for them.
        """
        if self.policy.run_timers(now, slop):
            self._raise(now)
        if self._slice_deadline is not None and self._slice_deadline <= now + slop:
            # s_timer_fn: raise the softirq; the timer is now spent.
            self._raise(min(self._slice_deadline, now))
            self._slice_deadline = None
        return self._resched_at is not None

    # -- domain lifetime --------------------------------------------------------------

    def add_domain(self, domid: int, now: int, *, paused: bool = True) -> Resched:
        """``sched_add_domain``: a new domain, ctrl-paused like Xen's (pass
        ``paused=False`` to create it running-ready; it is then woken at once)."""
        if domid is None or domid in self._doms:
            raise ValueError(f"bad or duplicate domain id {domid!r}")
        self._doms[domid] = DomSched(flags=DFM_CTRLPAUSE if paused else 0, lastschd=now)
        self.policy.add_task(domid)
        return RESCHED_NONE if paused else self._wake(domid, now)

    def remove_domain(self, domid: int) -> None:
        """Forget a domain.  It must not be :attr:`current`: pause it (or
        mark it shut down/crashed) and :meth:`schedule` away first, as Xen's
        synchronous ``domain_sleep`` in ``domain_kill`` guarantees."""
        if self._curr == domid:
            raise RuntimeError(f"domain {domid} is running on cpu {self.cpu}; "
                               "make it non-runnable and schedule() first")
        self.policy.remove_task(domid)
        del self._doms[domid]

    def migrate_out(self, domid: int) -> dict:
        """Detach ``domid`` for a move to another PCPU.

        Same precondition as :meth:`remove_domain` (not current).  Returns a
        plain dict of ints/None (msgpack-able): the generic state and the
        policy's per-domain state, for :meth:`migrate_in` on the target.
        """
        if self._curr == domid:
            raise RuntimeError(f"domain {domid} is running on cpu {self.cpu}; "
                               "pause it and schedule() first")
        st = self._doms.pop(domid)
        return {
            "flags": st.flags & ~DFM_RUNNING,
            "pausecnt": st.pausecnt,
            "cpu_time": st.cpu_time,
            "policy": self.policy.export_task(domid),
        }

    def migrate_in(self, domid: int, now: int, record: Optional[dict] = None) -> Resched:
        """Adopt a domain from another PCPU (``record`` from :meth:`migrate_out`;
        None means a runnable domain with default parameters).

        Sets DF_MIGRATED, so when the domain is (or next becomes) runnable BVT
        resets its avt to this CPU's SVT instead of trusting the foreign value.
        Like DOM0_PINCPUDOMAIN's unpause, this wakes it if runnable.
        """
        if domid is None or domid in self._doms:
            raise ValueError(f"bad or duplicate domain id {domid!r}")
        rec = record or {}
        st = DomSched(flags=(rec.get("flags", 0) & ~DFM_RUNNING) | DFM_MIGRATED,
                      pausecnt=rec.get("pausecnt", 0),
                      cpu_time=rec.get("cpu_time", 0),
                      lastschd=now)
        self._doms[domid] = st
        self.policy.import_task(domid, rec.get("policy"))
        return self._wake(domid, now)

    # -- run-state changes ------------------------------------------------------------

    def block(self, domid: int, now: int) -> Resched:
        """SCHEDOP_block: set DF_BLOCKED.  For the current domain: Action.NOW
        (and the event-pending race is resolved in :meth:`schedule`)."""
        self._doms[domid].flags |= DFM_BLOCKED
        return self._sleep(domid, now)

    def unblock(self, domid: int, now: int) -> Resched:
        """``domain_unblock``: an event arrived; wake if it was blocked."""
        st = self._doms[domid]
        if not st.flags & DFM_BLOCKED:
            return RESCHED_NONE
        st.flags &= ~DFM_BLOCKED
        return self._wake(domid, now)

    def pause(self, domid: int, now: int) -> Resched:
        """``domain_pause``: nestable internal pause (pausecnt)."""
        self._doms[domid].pausecnt += 1
        return self._sleep(domid, now)

    def unpause(self, domid: int, now: int) -> Resched:
        """``domain_unpause``: wakes when the count drops to zero."""
        st = self._doms[domid]
        if st.pausecnt <= 0:
            raise ValueError(f"domain {domid} is not paused")
        st.pausecnt -= 1
        return self._wake(domid, now) if st.pausecnt == 0 else RESCHED_NONE

    def ctrl_pause(self, domid: int, now: int) -> Resched:
        """``domain_pause_by_systemcontroller`` (DOM0_PAUSEDOMAIN): not nestable."""
        st = self._doms[domid]
        if st.flags & DFM_CTRLPAUSE:
            return RESCHED_NONE
        st.flags |= DFM_CTRLPAUSE
        return self._sleep(domid, now)

    def ctrl_unpause(self, domid: int, now: int) -> Resched:
        """``domain_unpause_by_systemcontroller`` (DOM0_UNPAUSEDOMAIN)."""
        st = self._doms[domid]
        if not st.flags & DFM_CTRLPAUSE:
            return RESCHED_NONE
        st.flags &= ~DFM_CTRLPAUSE
        return self._wake(domid, now)

    def mark_shutdown(self, domid: int, now: int) -> Resched:
        """DF_SHUTDOWN (SCHEDOP_shutdown): never runnable again."""
        self._doms[domid].flags |= DFM_SHUTDOWN
        return self._sleep(domid, now)

    def mark_crashed(self, domid: int, now: int) -> Resched:
        """DF_CRASHED (``domain_crash``): never runnable again."""
        self._doms[domid].flags |= DFM_CRASHED
        return self._sleep(domid, now)

    def yield_(self, domid: int, now: int) -> Resched:
        """SCHEDOP_yield: just run the scheduler (BVT charges, requeues at the
        tail; the domain stays runnable and may well be picked again)."""
        if domid != self._curr:
            return RESCHED_NONE
        return self._raise(now)

    # -- the scheduler proper -----------------------------------------------------------

    def schedule(self, now: int,
                 event_pending: Optional[Callable[[int], bool]] = None
                 ) -> tuple[Optional[int], int]:
        """``__enter_scheduler``: returns ``(next, slice_deadline)``.

        ``next`` is the domain id to run (None = idle) until ``slice_deadline``
        (absolute ns) unless something earlier calls for a reschedule.
        ``event_pending(domid)`` answers whether the blocked ``prev`` has an
        event pending (Xen: ``evtchn_upcall_pending`` in its shared_info); if so
        it is unblocked instead of descheduled.

        The slice can end at or before ``now``: BVT's r_time is an s32 and
        overflows when two evts are ~2^31·mcu_advance apart (possible with
        extreme warp values).  Xen then fires s_timer at once; a caller should
        still give the domain a minimal quantum before polling again, or it
        will reschedule in a loop without time advancing.
        """
        prev = self._curr
        prev_lastschd = self.lastschd(prev)
        if now < prev_lastschd:
            raise ValueError(f"time went backwards: now={now} < lastschd={prev_lastschd}")
        self._resched_at = None
        self._slice_deadline = None

        if prev is None:
            self._idle_time += now - prev_lastschd
            prev_runnable = False
        else:
            st = self._doms[prev]
            if st.flags & DFM_BLOCKED and event_pending is not None and event_pending(prev):
                st.flags &= ~DFM_BLOCKED
            st.cpu_time += now - prev_lastschd
            self.longest_charge = max(self.longest_charge, now - prev_lastschd)
            prev_runnable = domain_runnable(st.flags, st.pausecnt)

        nxt, r_time = self.policy.do_schedule(now, prev, prev_lastschd, prev_runnable)

        self._curr = nxt
        if nxt is None:
            self._idle_lastschd = now
        else:
            self._doms[nxt].lastschd = now
            self._doms[nxt].flags |= DFM_RUNNING
        if prev is not None and prev != nxt:
            self._doms[prev].flags &= ~DFM_RUNNING
        self._slice_deadline = now + r_time
        return nxt, self._slice_deadline

    # -- control ---------------------------------------------------------------------

    def adjdom(self, domid: int, direction: int,
               params: Optional[BVTAdjdom] = None) -> "int | BVTAdjdom":
        """DOM0_ADJUSTDOM for a domain on this CPU (see ``BVTScheduler.adjdom``).

        Returns the policy's result.  NB Xen 2.0's ``sched_adjdom`` discards
        the BVT -EINVAL and returns 0; whether to copy that is the dom0_op
        handler's decision.
        """
        if domid not in self._doms:
            return -ESRCH
        return self.policy.adjdom(domid, direction, params)

    def sched_ctl(self, direction: int, ctx_allow: int = 0) -> tuple[int, int]:
        """DOM0_SCHEDCTL (ctx_allow).  Per-PCPU here: apply to every PCPU."""
        return self.policy.ctl(direction, ctx_allow)

    # -- internals ---------------------------------------------------------------------

    def _raise(self, now: int) -> Resched:
        if self._resched_at is None:
            self._resched_at = now
        return RESCHED_NOW

    def _sleep(self, domid: int, now: int) -> Resched:
        """``domain_sleep``: only acts if the domain is no longer runnable."""
        st = self._doms[domid]
        if domain_runnable(st.flags, st.pausecnt):
            return RESCHED_NONE
        if self.policy.sleep(domid, running=(self._curr == domid)):
            return self._raise(now)
        return RESCHED_NONE

    def _wake(self, domid: int, now: int) -> Resched:
        """``domain_wake``: hand a runnable domain to the policy and apply its
        preemption decision."""
        st = self._doms[domid]
        if not domain_runnable(st.flags, st.pausecnt):
            return RESCHED_NONE
        curr = self._curr
        dec = self.policy.wake(domid, now, curr, self.lastschd(curr),
                               migrated=bool(st.flags & DFM_MIGRATED))
        st.flags &= ~DFM_MIGRATED
        if dec.preempt_now:
            return self._raise(now)
        at = dec.preempt_at
        if at is not None and (self._slice_deadline is None or self._slice_deadline > at):
            self._slice_deadline = at
            return Resched(Action.AT, at)
        return RESCHED_NONE
