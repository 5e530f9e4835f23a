"""Borrowed Virtual Time, as Xen 2.0 implements it (xen/common/sched_bvt.c @2.0.0).

Why a line-by-line port rather than "a BVT": the point of smpxen is to
behave like Xen 2.0, so scheduling decisions, slice lengths and even
Xen's arithmetic quirks are reproduced; every deliberate quirk is marked
"Xen quirk" below.

Model (Duda & Cheriton, SOSP'99, as cut down by Xen):

* Each PCPU owns one :class:`BVTScheduler`: one run queue, one system
  virtual time (SVT).  Domains never move between PCPUs on their own; a
  move is an explicit export/import (see :meth:`BVTScheduler.export_task`).
* Each domain has an actual virtual time ``avt`` that advances by
  ``mcu_advance`` (the inverse of its weight) per started 100 µs MCU of CPU it
  consumes, and an effective virtual time ``evt = avt - warp_value`` while
  warped, else ``avt``.  The domain with the lowest ``evt`` runs.
* All virtual times are u32 and all the C integer types are emulated
  (smpxen/arch/cint.py: u32, s32, s64), because Xen's behaviour at the
  edges (the SVT wrap, ``calc_avt`` overflow after ~4.29 s) depends on them.

This module does no I/O and keeps no clock: every entry point takes ``now``
(integer ns of system time) from the caller.  Xen's ac_timers (warp and
unwarp timers) become deadlines the caller learns from :meth:`next_timer`
and fires with :meth:`run_timers`.  Xen's "raise SCHEDULE_SOFTIRQ" becomes a
``True`` return value / :class:`WakeDecision` the caller (normally
:class:`smpxen.sched.core.SchedCore`) acts on.

The idle domain is not a domain id: it is represented by ``None`` (in the
run queue too, where Xen keeps the idle task permanently).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

from smpxen.arch.cint import s32, s64, u32
from smpxen.xen.dom0_ops import SCHED_INFO_GET, SCHED_INFO_PUT
from smpxen.xen.errno import EINVAL, ESRCH

__all__ = [
    "MCU", "MCU_ADVANCE", "TIME_SLOP", "CTX_ALLOW_DEFAULT", "WARPL_DEFAULT_MS",
    "WARPU_DEFAULT_MS", "SVT_WRAP_LIMIT", "SVT_WRAP_SUB", "IDLE_VT",
    "millisecs", "calc_avt", "calc_evt",
    "BVTDomInfo", "BVTAdjdom", "WakeDecision", "BVTScheduler",
]

# --- constants (sched_bvt.c); the ABI's (SCHED_*, errno) are smpxen.xen's ------

MCU = 100_000                  # Minimum Charging Unit: 100 µs, in ns
MCU_ADVANCE = 10               # default inverse weight
TIME_SLOP = 50_000             # defined but unused by sched_bvt.c (kept for reference)
CTX_ALLOW_DEFAULT = 5_000_000  # context switch allowance, 5 ms (global in Xen)
WARPL_DEFAULT_MS = 2000        # default warp limit (stored as ns)
WARPU_DEFAULT_MS = 1000        # default unwarp requirement (stored as ns)
SVT_WRAP_LIMIT = 0xF000_0000   # SVT at/above this triggers the wrap ...
SVT_WRAP_SUB = 0xE000_0000     # ... which subtracts this from SVT and every avt/evt
IDLE_VT = 0xFFFF_FFFF          # the idle task's avt/evt (~0U): it never wins on evt

def millisecs(ms: int) -> int:
    """Xen's ``MILLISECS(x)``: ms to ns as ``s_time_t``."""
    return s64(ms * 1_000_000)


def calc_avt(avt: int, mcu_advance: int, lastschd: int, now: int) -> int:
    """avt after running from ``lastschd`` to ``now``: every *started* MCU costs
    ``mcu_advance``.

    Xen quirk, kept: ``ranfor`` is ``(u32)(now - lastschd)`` and the ceiling is
    taken in u32, so a domain that ran for more than ~4.29 s without a pass
    through the scheduler is charged for the wrapped remainder only.
    """
    ranfor = u32(now - lastschd)
    mcus = u32(ranfor + MCU - 1) // MCU
    return u32(avt + mcus * mcu_advance)


def calc_evt(avt: int, warp: int, warp_value: int) -> int:
    """Effective virtual time: a warped domain borrows ``warp_value`` from its future."""
    return u32(avt - warp_value) if warp else u32(avt)


# --- per-domain state -----------------------------------------------------------

@dataclass
class BVTDomInfo:
    """``struct bvt_dom_info``.  Timers are absolute ns deadlines or ``None``.

    ``warpl`` / ``warpu`` are in ns here (Xen stores ``MILLISECS(x)``).
    """

    mcu_advance: int = MCU_ADVANCE
    avt: int = 0
    evt: int = 0
    warpback: int = 0
    warp: int = 0
    warp_value: int = 0
    warpl: int = WARPL_DEFAULT_MS * 1_000_000
    warpu: int = WARPU_DEFAULT_MS * 1_000_000
    warp_timer: Optional[int] = None
    unwarp_timer: Optional[int] = None


@dataclass
class BVTAdjdom:
    """``struct bvt_adjdom`` (the BVT part of DOM0_ADJUSTDOM).

    Units differ by direction exactly as in Xen: on PUT ``warpl``/``warpu``
    are milliseconds, on GET they come back as the stored nanoseconds.
    """

    mcu_adv: int = 0
    warpback: int = 0
    warpvalue: int = 0
    warpl: int = 0
    warpu: int = 0


class WakeDecision(NamedTuple):
    """What ``bvt_wake`` asked of the generic scheduler.

    ``preempt_now``: Xen raised SCHEDULE_SOFTIRQ (the woken domain should run
    now, or the CPU was idle).  Otherwise ``preempt_at`` (absolute ns, or
    ``None`` if the domain was already queued) is the ``r_time`` by which the
    current domain's slice must end; Xen pulls ``s_timer`` to it only if the
    timer is currently later.
    """

    preempt_now: bool
    preempt_at: Optional[int]


# --- the per-PCPU scheduler ------------------------------------------------------

class BVTScheduler:
    """One PCPU's BVT state: run queue, SVT, per-domain :class:`BVTDomInfo`.

    The run queue is a list whose order matters (ties on evt are broken by
    queue position, as in Xen): woken domains go to the head, descheduled
    runnable ones to the tail, and the idle task (``None``) stays wherever
    ``bvt_init_idle_task`` put it (the head at start).
    """

    def __init__(self, ctx_allow: int = CTX_ALLOW_DEFAULT, svt: int = 0) -> None:
        # ``svt`` lets tests start near the wrap; Xen always starts at 0.
        self.svt: int = u32(svt)
        self.ctx_allow: int = s32(ctx_allow)
        self._doms: dict[int, BVTDomInfo] = {}
        # Idle task: avt = evt = ~0U so any real domain beats it; mcu_advance is
        # the default because bvt_add_task runs for it too (used only in the
        # harmless curr_evt computation of wake while idle).
        self._idle = BVTDomInfo(avt=IDLE_VT, evt=IDLE_VT)
        self._rq: list[Optional[int]] = [None]
        self._onrq: set[Optional[int]] = {None}

    # -- introspection ---------------------------------------------------------

    def info(self, domid: Optional[int]) -> BVTDomInfo:
        """The live :class:`BVTDomInfo` (``None`` = idle).  Mutating it is at your own risk."""
        return self._idle if domid is None else self._doms[domid]

    def has_task(self, domid: int) -> bool:
        return domid in self._doms

    def on_runqueue(self, domid: Optional[int]) -> bool:
        return domid in self._onrq

    @property
    def runqueue(self) -> tuple[Optional[int], ...]:
        """Run queue order, head first (``None`` is the idle task)."""
        return tuple(self._rq)

    def _add_head(self, domid: int) -> None:
        self._rq.insert(0, domid)
        self._onrq.add(domid)

    def _add_tail(self, domid: int) -> None:
        self._rq.append(domid)
        self._onrq.add(domid)

    def _del(self, domid: int) -> None:
        self._rq.remove(domid)
        self._onrq.discard(domid)

    # -- domain lifetime -------------------------------------------------------

    def add_task(self, domid: int) -> None:
        """``bvt_add_task``: defaults, and avt = evt = this CPU's SVT.

        The domain is *not* queued: Xen creates domains paused and queues them
        when they are first woken.
        """
        if domid is None:
            raise ValueError("the idle task is built in")
        if domid in self._doms:
            raise ValueError(f"domain {domid} already added")
        self._doms[domid] = BVTDomInfo(avt=self.svt, evt=self.svt)

    def remove_task(self, domid: int) -> None:
        """Forget a domain (destruction, or export to another PCPU).

        Xen 2.0 BVT has no ``rem_task``: a dying domain leaves the run queue via
        ``sleep``/``do_schedule`` and its info is freed later.  Here both happen
        at once, so the caller must have descheduled it first.
        """
        if domid in self._onrq:
            self._del(domid)
        del self._doms[domid]

    def export_task(self, domid: int) -> dict:
        """Remove ``domid`` and return its state as a plain dict (ints / None),
        suitable for msgpack, for :meth:`import_task` on another PCPU.

        avt/evt travel along but are meaningless against another CPU's SVT;
        the importer's wake must be told ``migrated=True`` so avt is reset.
        """
        rec = asdict(self._doms[domid])
        self.remove_task(domid)
        return rec

    def import_task(self, domid: int, rec: Optional[dict] = None) -> None:
        """Adopt a domain exported by another PCPU (not queued until woken)."""
        if domid in self._doms:
            raise ValueError(f"domain {domid} already added")
        if rec is None:
            self.add_task(domid)
            return
        self._doms[domid] = BVTDomInfo(**rec)

    # -- wake / sleep ----------------------------------------------------------

    def wake(self, domid: int, now: int, curr: Optional[int], curr_lastschd: int,
             migrated: bool = False) -> WakeDecision:
        """``bvt_wake``: queue at the head and decide on preemption.

        avt catches up to SVT if it lags (so sleeping earns no credit) or if the
        domain just migrated (its avt is from another CPU's clock).  The woken
        domain preempts at once if the CPU is idle or its evt is not above the
        running domain's up-to-date evt; otherwise the running domain may keep
        the CPU until ``r_time = curr.lastschd + (evt - curr_evt)/curr.mcu_advance
        + ctx_allow`` (Xen quirk: the middle term is a count of MCUs added as
        if it were ns, so this is ≈ lastschd + ctx_allow).
        """
        if domid in self._onrq:
            return WakeDecision(False, None)
        inf = self._doms[domid]
        self._add_head(domid)

        if inf.avt < self.svt or migrated:
            inf.avt = self.svt
        inf.evt = calc_evt(inf.avt, inf.warp, inf.warp_value)

        cinf = self.info(curr)
        curr_evt = calc_evt(calc_avt(cinf.avt, cinf.mcu_advance, curr_lastschd, now),
                            cinf.warp, cinf.warp_value)
        if curr is None or inf.evt <= curr_evt:
            return WakeDecision(True, None)
        r_time = curr_lastschd + u32(inf.evt - curr_evt) // cinf.mcu_advance + self.ctx_allow
        return WakeDecision(False, r_time)

    def sleep(self, domid: int, running: bool) -> bool:
        """``bvt_sleep``: returns True if the CPU must reschedule now.

        A running domain stays queued; ``do_schedule`` drops it when it finds
        it non-runnable.  Others are dequeued immediately.
        """
        if running:
            return True
        if domid in self._onrq:
            self._del(domid)
        return False

    # -- the main function -----------------------------------------------------

    def do_schedule(self, now: int, prev: Optional[int], prev_lastschd: int,
                    prev_runnable: bool) -> tuple[Optional[int], int]:
        """``bvt_do_schedule``: returns ``(next, r_time)``, r_time in ns (s32).

        Charges ``prev``, requeues it at the tail if still runnable, picks the
        lowest evt (``next``) and second lowest (``next_prime``) with Xen's
        exact scan (ties go to the earlier queue position; the idle task
        counts, with evt ~0), sets SVT to the minimum avt on the queue, arms
        ``next``'s warp timer, wraps virtual time, and sizes the slice.
        """
        if prev is not None:
            pinf = self._doms[prev]
            if prev not in self._onrq:
                raise AssertionError(f"prev {prev} not on the run queue")
            pinf.avt = calc_avt(pinf.avt, pinf.mcu_advance, prev_lastschd, now)
            pinf.evt = calc_evt(pinf.avt, pinf.warp, pinf.warp_value)
            if pinf.warpback and pinf.warpl > 0:
                pinf.warp_timer = None
            self._del(prev)
            if prev_runnable:
                self._add_tail(prev)

        next_d: Optional[int] = None
        next_inf = self._idle
        next_prime_d: Optional[int] = None
        next_prime_inf: Optional[BVTDomInfo] = None
        next_evt = next_prime_evt = min_avt = IDLE_VT
        for d in self._rq:
            p = self.info(d)
            if p.evt < next_evt:
                next_prime_d, next_prime_inf, next_prime_evt = next_d, next_inf, next_evt
                next_d, next_inf, next_evt = d, p, p.evt
            elif next_prime_evt == IDLE_VT:
                next_prime_d, next_prime_inf, next_prime_evt = d, p, p.evt
            elif p.evt < next_prime_evt:
                next_prime_d, next_prime_inf, next_prime_evt = d, p, p.evt
            if p.avt < min_avt:
                min_avt = p.avt

        if next_inf.warp and next_inf.warpl > 0:
            next_inf.warp_timer = now + next_inf.warpl

        if min_avt != IDLE_VT:
            self.svt = min_avt

        if self.svt >= SVT_WRAP_LIMIT:
            self._wrap()

        if next_d is None:
            r_time = self.ctx_allow
        elif next_prime_d is None:
            # Only one runnable domain besides idle ("RN: random constant").
            r_time = s32(10 * self.ctx_allow)
        else:
            # Xen quirk, kept on purpose: (evt difference)/mcu_advance is a
            # number of MCUs, yet it is added to ctx_allow (ns) as if it were
            # ns.  The slice is therefore ctx_allow plus a few hundred ns at
            # most, not "run until next_prime's evt is reached".  The sum is
            # done in u32 and stored in an s32, as in C.
            r_time = s32(u32(next_prime_inf.evt - next_inf.evt) // next_inf.mcu_advance
                         + self.ctx_allow)
        return next_d, r_time

    def _wrap(self) -> None:
        """Virtual-time overrun: shift SVT and *every* domain on this CPU.

        Xen quirk, kept: all domains of the CPU are shifted, blocked ones too.
        A domain whose avt lags SVT by more than 0x10000000 (it must be asleep,
        since queued domains are ≥ SVT) wraps around to a value *above* the new
        SVT and so loses its wake-up catch-up until the others pass it.
        The idle task is not in Xen's domain list, so it keeps evt ~0.
        """
        for inf in self._doms.values():
            inf.evt = u32(inf.evt - SVT_WRAP_SUB)
            inf.avt = u32(inf.avt - SVT_WRAP_SUB)
        self.svt = u32(self.svt - SVT_WRAP_SUB)

    # -- warp timers -------------------------------------------------------------

    def next_timer(self) -> Optional[int]:
        """Earliest pending warp/unwarp deadline on this CPU, or None."""
        best: Optional[int] = None
        for inf in self._doms.values():
            for t in (inf.warp_timer, inf.unwarp_timer):
                if t is not None and (best is None or t < best):
                    best = t
        return best

    def run_timers(self, now: int, slop: int = 0) -> bool:
        """Fire every warp/unwarp timer due by ``now + slop`` (in deadline
        order, including ones armed by a firing); True if any asked for a
        reschedule.

        warp timer (warp limit used up): stop borrowing; if warpu is 0 never
        warp again and reschedule; arm the unwarp timer at now + warpu.  Note
        Xen does *not* reschedule when warpu > 0: the domain keeps the CPU to
        the end of its slice, its evt is only recomputed when it is charged.
        unwarp timer: if still allowed to warp, warp again and reschedule.
        """
        resched = False
        limit = now + slop
        while True:
            due: Optional[tuple[int, int, int]] = None
            for domid, inf in self._doms.items():
                if inf.warp_timer is not None and inf.warp_timer <= limit:
                    cand = (inf.warp_timer, 0, domid)
                    if due is None or cand < due:
                        due = cand
                if inf.unwarp_timer is not None and inf.unwarp_timer <= limit:
                    cand = (inf.unwarp_timer, 1, domid)
                    if due is None or cand < due:
                        due = cand
            if due is None:
                return resched
            _, kind, domid = due
            inf = self._doms[domid]
            if kind == 0:
                inf.warp_timer = None
                inf.warp = 0
                if inf.warpu == 0:
                    # Stop warping for good.  Xen still arms the unwarp timer
                    # at now + 0, which fires and does nothing since warpback
                    # is 0; skipping it is equivalent.
                    inf.warpback = 0
                    resched = True
                    inf.unwarp_timer = None
                else:
                    inf.unwarp_timer = now + inf.warpu
            else:
                inf.unwarp_timer = None
                if inf.warpback:
                    inf.warp = 1
                    resched = True

    # -- control -----------------------------------------------------------------

    def ctl(self, direction: int, ctx_allow: int = 0) -> tuple[int, int]:
        """``bvt_ctl`` (DOM0_SCHEDCTL): returns ``(rc, ctx_allow)``.

        Xen's ctx_allow is global; here each PCPU has its own copy, so the
        caller must apply a PUT to every PCPU.  No validation, as in Xen.
        """
        if direction == SCHED_INFO_PUT:
            self.ctx_allow = s32(u32(ctx_allow))
        elif direction != SCHED_INFO_GET:
            return -EINVAL, self.ctx_allow
        return 0, self.ctx_allow

    def adjdom(self, domid: int, direction: int,
               params: Optional[BVTAdjdom] = None) -> "int | BVTAdjdom":
        """``bvt_adjdom`` (DOM0_ADJUSTDOM, BVT part).

        PUT: returns 0 or ``-EINVAL`` if mcu_adv is 0 (it is a divisor) or warpl
        / warpu is negative; fields are truncated to their C types first
        (mcu_adv u32, warpback u32, warpvalue s32, warpl/warpu s64, in ms).
        ``warp`` is set to ``warpback``; the unwarp timer is cancelled, and the
        warp timer too when warping is switched off.  evt is *not* recomputed:
        the change shows at the domain's next charge or wake, as in Xen.
        GET: returns a :class:`BVTAdjdom` with warpl/warpu in ns.
        Unknown domain: ``-ESRCH``; bad direction: ``-EINVAL`` (both checked by
        Xen's generic ``sched_adjdom``).
        """
        inf = self._doms.get(domid)
        if inf is None:
            return -ESRCH
        if direction == SCHED_INFO_PUT:
            if params is None:
                return -EINVAL
            mcu_adv = u32(params.mcu_adv)
            warpback = u32(params.warpback)
            warpvalue = s32(params.warpvalue)
            warpl = s64(params.warpl)
            warpu = s64(params.warpu)
            if mcu_adv == 0 or warpl < 0 or warpu < 0:
                return -EINVAL
            inf.mcu_advance = mcu_adv
            inf.warpback = s32(warpback)
            inf.warp = inf.warpback
            inf.warp_value = warpvalue
            inf.warpl = millisecs(warpl)
            inf.warpu = millisecs(warpu)
            inf.unwarp_timer = None
            if not warpback:
                inf.warp_timer = None
            return 0
        if direction == SCHED_INFO_GET:
            return BVTAdjdom(mcu_adv=inf.mcu_advance, warpback=inf.warpback,
                             warpvalue=inf.warp_value, warpl=inf.warpl, warpu=inf.warpu)
        return -EINVAL
