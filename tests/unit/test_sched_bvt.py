"""Tests for the Xen 2.0 BVT policy (smpxen.sched.bvt).

Hand-computed arithmetic first (the quirks are the point of a faithful
port), then a small discrete-event simulation driving a SchedCore to check
that CPU shares follow the weights and that warping cuts wake-up latency.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Optional

import pytest

from smpxen.arch.cint import s32, s64, u32
from smpxen.sched.bvt import (CTX_ALLOW_DEFAULT, IDLE_VT, MCU, MCU_ADVANCE, SVT_WRAP_LIMIT,
                              BVTAdjdom, BVTScheduler, calc_avt, calc_evt, millisecs)
from smpxen.xen.dom0_ops import SCHED_INFO_GET, SCHED_INFO_PUT
from smpxen.xen.errno import EINVAL, ESRCH
from smpxen.sched.core import SchedCore
from smpxen.sched.flags import DFM_BLOCKED

MS = 1_000_000
US = 1_000


# ---------------------------------------------------------------------------
# integer helpers and calc_avt / calc_evt
# ---------------------------------------------------------------------------

def test_c_integer_helpers():
    assert u32(-1) == 0xFFFFFFFF
    assert u32(1 << 32) == 0
    assert s32(0x80000000) == -(1 << 31)
    assert s32(0x7FFFFFFF) == 0x7FFFFFFF
    assert s32(-5) == -5
    assert s64(1 << 63) == -(1 << 63)
    assert millisecs(2000) == 2_000_000_000


@pytest.mark.parametrize("elapsed,mcus", [
    (0, 0),                  # nothing ran: no charge
    (1, 1),                  # any started MCU is charged in full
    (MCU, 1),
    (MCU + 1, 2),
    (5 * MS, 50),
    (5 * MS + 100, 51),      # a 5 ms slice plus the units-quirk ns
])
def test_calc_avt_ceil(elapsed, mcus):
    assert calc_avt(1000, 10, 7 * MS, 7 * MS + elapsed) == 1000 + 10 * mcus
    assert calc_avt(1000, 3, 0, elapsed) == 1000 + 3 * mcus


def test_calc_avt_u32_arithmetic():
    # avt itself wraps modulo 2^32
    assert calc_avt(0xFFFFFFFB, 10, 0, 1) == 5
    # ranfor is (u32)(now - lastschd): 2^32 + 50 ns is charged as 50 ns
    assert calc_avt(0, 10, 0, (1 << 32) + 50) == 10
    # ranfor + MCU - 1 overflows u32 for ranfor just under 2^32: charged 0 MCUs
    # ((2^32 - 1 + 99999) mod 2^32 = 99998, / 100000 = 0)
    assert calc_avt(0, 10, 0, (1 << 32) - 1) == 0
    # largest ranfor that does not overflow
    assert calc_avt(0, 1, 0, (1 << 32) - MCU) == ((1 << 32) - 1) // MCU


def test_calc_evt():
    assert calc_evt(500, 0, 100) == 500          # not warped: evt = avt
    assert calc_evt(500, 1, 100) == 400          # warped: borrow warp_value
    assert calc_evt(50, 1, 100) == 0xFFFFFFCE    # u32 underflow, as in C
    assert calc_evt(50, 1, -100) == 150          # negative warp = penalty


# ---------------------------------------------------------------------------
# do_schedule: slices, picking, SVT, wrap
# ---------------------------------------------------------------------------

def _bvt_with(*domids, svt=0, ctx_allow=CTX_ALLOW_DEFAULT):
    b = BVTScheduler(ctx_allow=ctx_allow, svt=svt)
    for d in domids:
        b.add_task(d)
    return b


def test_idle_only_slice_is_ctx_allow():
    b = BVTScheduler()
    assert b.do_schedule(0, None, 0, False) == (None, CTX_ALLOW_DEFAULT)
    assert b.runqueue == (None,)


def test_single_runnable_slice_is_ten_ctx_allow():
    b = _bvt_with(1)
    assert b.wake(1, 0, None, 0).preempt_now
    assert b.do_schedule(0, None, 0, False) == (1, 10 * CTX_ALLOW_DEFAULT)
    # and again when it is prev
    assert b.do_schedule(50 * MS, 1, 0, True) == (1, 50 * MS)
    assert b.info(1).avt == 500 * MCU_ADVANCE


def test_two_runnable_slice_units_quirk():
    """r_time = (evt(next_prime) - evt(next)) / mcu_advance(next) + ctx_allow:
    an MCU count added to ns, so an evt gap of 1000 adds 100 *ns*."""
    b = _bvt_with(1, 2)
    b.wake(1, 0, None, 0)
    b.wake(2, 0, None, 0)
    b.info(2).avt = b.info(2).evt = 1000
    nxt, r = b.do_schedule(0, None, 0, False)
    assert nxt == 1
    assert r == 1000 // 10 + 5 * MS == 5_000_100


def test_slice_s32_overflow_quirk():
    # 10 * ctx_allow is s32 arithmetic in Xen: 10 * 300 ms overflows.
    b = _bvt_with(1, ctx_allow=300 * MS)
    b.wake(1, 0, None, 0)
    assert b.do_schedule(0, None, 0, False) == (1, 3_000_000_000 - (1 << 32))


def test_pick_lowest_evt_and_tie_goes_to_queue_head():
    b = _bvt_with(1, 2, 3)
    for d in (1, 2, 3):
        b.wake(d, 0, None, 0)
    assert b.runqueue == (3, 2, 1, None)      # wake queues at the head
    assert b.do_schedule(0, None, 0, False)[0] == 3
    # 3 is charged 1 MCU and goes to the tail; 2 is now at the head
    assert b.do_schedule(1, 3, 0, True)[0] == 2
    assert b.runqueue == (2, 1, None, 3)
    assert b.info(3).avt == 10


def test_do_schedule_drops_nonrunnable_prev_and_sets_svt():
    b = _bvt_with(1, 2)
    b.wake(1, 0, None, 0)
    b.wake(2, 0, None, 0)
    assert b.do_schedule(0, None, 0, False)[0] == 2
    nxt, _ = b.do_schedule(5 * MS, 2, 0, False)   # 2 blocked
    assert nxt == 1 and not b.on_runqueue(2)
    assert b.info(2).avt == 500
    assert b.svt == 0                              # min avt of the queue (1 has 0)
    nxt, _ = b.do_schedule(8 * MS, 1, 5 * MS, True)
    assert nxt == 1 and b.info(1).avt == 300 and b.svt == 300


def test_svt_wrap():
    start = SVT_WRAP_LIMIT - 0x10
    b = _bvt_with(1, 2, 3, svt=start)
    b.wake(1, 0, None, 0)
    b.wake(2, 0, None, 0)                # 3 stays asleep
    b.info(3).avt = b.info(3).evt = start - 0x1000   # lags SVT a bit
    assert b.do_schedule(0, None, 0, False)[0] == 2
    assert b.do_schedule(1 * MS, 2, 0, True)[0] == 1      # 2: start + 100
    assert b.svt == start                                 # 1 still at start
    nxt, _ = b.do_schedule(2 * MS, 1, 1 * MS, True)       # 1: start + 100 -> SVT wraps
    assert b.svt == start + 100 - 0xE0000000 == 0x10000054
    assert b.info(1).avt == b.info(2).avt == 0x10000054
    assert b.info(3).avt == start - 0x1000 - 0xE0000000   # lag preserved
    assert b.info(None).evt == IDLE_VT                    # idle not shifted
    assert nxt == 2                                       # tie: 2 ahead in the queue
    # after the wrap the sleeper still catches up on wake
    b.wake(3, 2 * MS, 2, 2 * MS)
    assert b.info(3).avt == b.svt


def test_svt_wrap_quirk_far_behind_sleeper():
    """Xen shifts *every* domain on the CPU; a sleeper more than 0x10000000
    behind wraps to a value above the new SVT and loses its catch-up."""
    start = SVT_WRAP_LIMIT - 0x10
    b = _bvt_with(1, 9, svt=start)
    b.info(9).avt = b.info(9).evt = 0x100
    b.wake(1, 0, None, 0)
    b.do_schedule(0, None, 0, False)
    b.do_schedule(1 * MS, 1, 0, True)        # 1 passes the limit alone
    assert b.svt == 0x10000054
    assert b.info(9).avt == 0x20000100 > b.svt
    b.wake(9, 1 * MS, 1, 1 * MS)
    assert b.info(9).avt == 0x20000100       # not caught up: Xen behaviour


# ---------------------------------------------------------------------------
# wake
# ---------------------------------------------------------------------------

def test_wake_when_idle_preempts_now():
    b = _bvt_with(1)
    assert b.wake(1, 123, None, 0) == (True, None)
    assert b.wake(1, 124, None, 0) == (False, None)      # already queued: no-op


def test_wake_catches_up_to_svt_and_migrated_resets():
    b = _bvt_with(1, 2, 3)
    b.svt = 777
    b.info(1).avt = 5            # behind: catch up
    b.info(2).avt = 900          # ahead: kept
    b.info(3).avt = 900          # ahead but migrated: reset
    b.wake(1, 0, None, 0)
    b.wake(2, 0, None, 0)
    b.wake(3, 0, None, 0, migrated=True)
    assert (b.info(1).avt, b.info(2).avt, b.info(3).avt) == (777, 900, 777)
    assert b.info(1).evt == 777


def test_wake_preempt_now_or_at_r_time():
    b = _bvt_with(1, 2, 3)
    b.wake(1, 0, None, 0)
    assert b.do_schedule(0, None, 0, False) == (1, 50 * MS)
    # at 1 ms, curr (1) has curr_evt = 0 + 10 MCUs * 10 = 100
    b.info(2).avt = 5000
    dec = b.wake(2, 1 * MS, 1, 0)
    assert not dec.preempt_now
    # r_time = lastschd + (5000 - 100) / 10 + ctx_allow = 0 + 490 + 5 ms
    assert dec.preempt_at == 5_000_490
    # a woken domain whose evt <= curr_evt preempts at once (equal counts)
    b.info(3).avt = 100
    assert b.wake(3, 1 * MS, 1, 0) == (True, None)


def test_sleep():
    b = _bvt_with(1, 2)
    b.wake(1, 0, None, 0)
    b.wake(2, 0, None, 0)
    assert b.sleep(1, running=True) is True and b.on_runqueue(1)
    assert b.sleep(2, running=False) is False and not b.on_runqueue(2)


# ---------------------------------------------------------------------------
# warping
# ---------------------------------------------------------------------------

def _warp(b, d, warpvalue=4950, warpl=10, warpu=20, mcu_adv=10, warpback=1):
    assert b.adjdom(d, SCHED_INFO_PUT, BVTAdjdom(mcu_adv=mcu_adv, warpback=warpback,
                                                 warpvalue=warpvalue, warpl=warpl,
                                                 warpu=warpu)) == 0


def test_warped_wake_preempts_where_unwarped_waits():
    """Same history, same wake: only the warp makes it preempt at once."""
    results = {}
    for warped in (False, True):
        b = _bvt_with(1, 2)
        if warped:
            _warp(b, 2)
        b.wake(1, 0, None, 0)
        b.do_schedule(0, None, 0, False)
        b.info(2).avt = 5000          # 2 used more than its share earlier
        results[warped] = b.wake(2, 1 * MS, 1, 0)
    # curr_evt of 1 after 1 ms is 100
    assert results[False].preempt_now is False
    assert results[False].preempt_at == (5000 - 100) // 10 + 5 * MS
    assert results[True] == (True, None)      # evt = 5000 - 4950 = 50 <= 100


def test_warp_evt_and_timers():
    b = _bvt_with(1, 2)
    _warp(b, 2, warpvalue=50, warpl=10, warpu=20)
    assert b.info(2).warp == 1 and b.info(2).warpl == 10 * MS
    b.wake(1, 0, None, 0)
    b.wake(2, 0, None, 0)
    assert b.info(2).evt == u32(0 - 50)      # SVT 0 minus the warp: wraps high!
    # Xen quirk: a warp larger than avt underflows evt to ~4e9, so the
    # "warped" domain loses.  Give it some avt first.
    b.info(2).avt = 1000
    b.info(2).evt = calc_evt(1000, 1, 50)
    assert b.do_schedule(0, None, 0, False)[0] == 1     # 1 has evt 0
    b.info(1).avt = b.info(1).evt = 2000
    nxt, _ = b.do_schedule(1 * MS, 1, 1 * MS, True)
    assert nxt == 2 and b.info(2).evt == 950
    assert b.info(2).warp_timer == 1 * MS + 10 * MS      # armed at now + warpl
    assert b.next_timer() == 11 * MS
    assert b.run_timers(11 * MS - 1) is False and b.info(2).warp == 1
    # warp limit used up: unwarp, no reschedule (warpu > 0), unwarp timer armed
    assert b.run_timers(11 * MS) is False
    assert b.info(2).warp == 0 and b.info(2).warp_timer is None
    assert b.info(2).unwarp_timer == 31 * MS
    assert b.info(2).evt == 950                          # stale until charged
    nxt, _ = b.do_schedule(12 * MS, 2, 1 * MS, True)
    assert b.info(2).evt == b.info(2).avt == 1000 + 110 * 10
    # unwarp requirement met: warp again, reschedule
    assert b.run_timers(31 * MS) is True and b.info(2).warp == 1
    assert b.info(2).unwarp_timer is None and b.next_timer() is None


def test_warp_timer_removed_when_descheduled_and_slop():
    b = _bvt_with(1)
    _warp(b, 1, warpvalue=0, warpl=10, warpu=20)
    b.wake(1, 0, None, 0)
    b.do_schedule(0, None, 0, False)
    assert b.info(1).warp_timer == 10 * MS
    b.do_schedule(2 * MS, 1, 0, False)                   # blocked
    assert b.info(1).warp_timer is None
    # re-armed from scratch on the next dispatch (warpl is per dispatch)
    b.wake(1, 3 * MS, None, 2 * MS)
    b.do_schedule(3 * MS, None, 2 * MS, False)
    assert b.info(1).warp_timer == 13 * MS
    assert b.run_timers(13 * MS - 40 * US, slop=50 * US) is False
    assert b.info(1).warp == 0


def test_warp_timer_with_warpu_zero_stops_warping():
    b = _bvt_with(1)
    _warp(b, 1, warpvalue=0, warpl=1, warpu=0)
    b.wake(1, 0, None, 0)
    b.do_schedule(0, None, 0, False)
    assert b.run_timers(1 * MS) is True
    inf = b.info(1)
    assert (inf.warp, inf.warpback, inf.unwarp_timer) == (0, 0, None)


# ---------------------------------------------------------------------------
# adjdom / ctl
# ---------------------------------------------------------------------------

def test_adjdom_defaults_and_get_in_ns():
    b = _bvt_with(1)
    got = b.adjdom(1, SCHED_INFO_GET)
    assert got == BVTAdjdom(mcu_adv=MCU_ADVANCE, warpback=0, warpvalue=0,
                            warpl=2000 * MS, warpu=1000 * MS)
    assert b.adjdom(1, SCHED_INFO_PUT, BVTAdjdom(20, 1, -7, 3, 4)) == 0
    assert b.adjdom(1, SCHED_INFO_GET) == BVTAdjdom(20, 1, -7, 3 * MS, 4 * MS)
    assert b.info(1).warp == 1            # warp follows warpback


@pytest.mark.parametrize("params", [
    BVTAdjdom(mcu_adv=0, warpl=1, warpu=1),
    BVTAdjdom(mcu_adv=1 << 32, warpl=1, warpu=1),   # truncates to u32 0
    BVTAdjdom(mcu_adv=10, warpl=-1, warpu=1),
    BVTAdjdom(mcu_adv=10, warpl=1, warpu=-1),
    BVTAdjdom(mcu_adv=10, warpl=1 << 63, warpu=1),  # s64: negative
])
def test_adjdom_einval(params):
    b = _bvt_with(1)
    before = b.adjdom(1, SCHED_INFO_GET)
    assert b.adjdom(1, SCHED_INFO_PUT, params) == -EINVAL == -22
    assert b.adjdom(1, SCHED_INFO_GET) == before      # nothing changed


def test_adjdom_other_errors_and_timer_cancel():
    b = _bvt_with(1)
    assert b.adjdom(5, SCHED_INFO_GET) == -ESRCH
    assert b.adjdom(1, 7) == -EINVAL
    assert b.adjdom(1, SCHED_INFO_PUT) == -EINVAL
    b.info(1).warp_timer = 10
    b.info(1).unwarp_timer = 20
    assert b.adjdom(1, SCHED_INFO_PUT, BVTAdjdom(10, 1, 0, 1, 1)) == 0
    assert (b.info(1).warp_timer, b.info(1).unwarp_timer) == (10, None)
    assert b.adjdom(1, SCHED_INFO_PUT, BVTAdjdom(10, 0, 0, 1, 1)) == 0
    assert b.info(1).warp_timer is None


def test_ctl():
    b = BVTScheduler()
    assert b.ctl(SCHED_INFO_GET) == (0, 5 * MS)
    assert b.ctl(SCHED_INFO_PUT, 2 * MS) == (0, 2 * MS)
    assert b.do_schedule(0, None, 0, False) == (None, 2 * MS)
    assert b.ctl(9)[0] == -EINVAL


# ---------------------------------------------------------------------------
# discrete-event simulation
# ---------------------------------------------------------------------------

@dataclass
class Task:
    """A simulated guest: compute-bound (``burst`` None), or a closed loop that
    computes ``burst`` ns, blocks, and is woken by an event ``sleep`` ns later
    (think: a request/response server).  ``latencies`` collects, per wake-up,
    the ns from the event to being put on the CPU."""

    domid: int
    mcu_adv: int = MCU_ADVANCE
    burst: Optional[int] = None
    sleep: int = 0
    warp: Optional[tuple[int, int, int]] = None     # (warpvalue, warpl ms, warpu ms)
    latencies: list[int] = field(default_factory=list)


def simulate(tasks: list[Task], duration: int, svt: int = 0) -> tuple[SchedCore, int]:
    """Run ``tasks`` on one SchedCore until ``duration`` ns, the way a PCPU
    loop would: run the current domain until the earliest of its next
    deadline, its own block, a pending event; then apply events and poll.
    ``svt`` is the initial SVT (see the warp test for why it matters)."""
    core = SchedCore(policy=BVTScheduler(svt=svt))
    by_id = {t.domid: t for t in tasks}
    remaining: dict[int, float] = {}
    wake_at: dict[int, int] = {}
    events: list[tuple[int, int]] = []
    for t in tasks:
        core.add_domain(t.domid, 0)
        wv, wl, wu = t.warp if t.warp else (0, 0, 0)
        assert core.adjdom(t.domid, SCHED_INFO_PUT,
                           BVTAdjdom(t.mcu_adv, 1 if t.warp else 0, wv, wl, wu)) == 0
        if t.burst is None:
            remaining[t.domid] = float("inf")
        else:
            core.block(t.domid, 0)
            heapq.heappush(events, (t.sleep + t.domid, t.domid))
        core.ctrl_unpause(t.domid, 0)
    now = 0
    while now < duration:
        cur = core.current
        cands = [duration]
        dl = core.next_deadline()
        if dl is not None:
            cands.append(max(dl, now))
        if events:
            cands.append(events[0][0])
        if cur is not None and remaining[cur] != float("inf"):
            cands.append(now + int(remaining[cur]))
        t = min(cands)
        if cur is not None:
            remaining[cur] -= t - now
        now = t
        if cur is not None and remaining[cur] == 0:
            core.block(cur, now)
            heapq.heappush(events, (now + by_id[cur].sleep, cur))
        while events and events[0][0] <= now:
            _, d = heapq.heappop(events)
            assert core.flags(d) & DFM_BLOCKED
            remaining[d] = by_id[d].burst
            wake_at[d] = now
            core.unblock(d, now)
        if core.poll(now):
            nxt, _ = core.schedule(now)
            if nxt in wake_at:
                by_id[nxt].latencies.append(now - wake_at.pop(nxt))
    return core, now


@pytest.mark.parametrize("advs", [
    (10, 10),
    (10, 20, 40),
    (5, 10, 15, 30),
    (1, 3),
])
def test_cpu_shares_follow_weights(advs):
    tasks = [Task(i + 1, mcu_adv=a) for i, a in enumerate(advs)]
    core, end = simulate(tasks, 20_000 * MS)
    weights = [1 / a for a in advs]
    total_w = sum(weights)
    busy = sum(core.cpu_time(t.domid, end) for t in tasks)
    assert busy + core.idle_time(end) == end
    assert core.idle_time(end) == 0
    for t, w in zip(tasks, weights):
        share = core.cpu_time(t.domid, end) / busy
        expect = w / total_w
        assert abs(share - expect) <= 0.03 * expect, (t.domid, share, expect)


def test_warped_domain_has_low_wakeup_latency():
    """A server domain (5 ms of work per request, next request 1 ms after it
    answers) next to two CPU hogs.  Having just run, its avt is ahead of
    SVT when the next request arrives, so unwarped it waits for the hog's
    slice to end; warped (evt = avt - warp_value) it preempts at once."""
    def run(warp):
        tasks = [Task(1), Task(2), Task(3, burst=5 * MS, sleep=1 * MS, warp=warp)]
        # Start SVT above the warp value: evt = avt - warp_value is u32, so a
        # warp larger than avt underflows and makes the domain *last* (Xen
        # behaviour, see test_warp_evt_and_timers).
        core, end = simulate(tasks, 2000 * MS, svt=10_000_000)
        return tasks[2].latencies, core.cpu_time(3, end) / end

    plain, plain_share = run(None)
    warped, warped_share = run((1_000_000, 10, 1000))
    assert len(plain) > 50 and len(warped) > 50
    mean_plain = sum(plain) / len(plain)
    assert max(warped) == 0            # so the mean wake-up latency is 0 too
    assert mean_plain > 1 * MS
    # the borrowed time shows up as a larger share
    assert warped_share > plain_share
