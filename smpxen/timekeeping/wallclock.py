"""Wall-clock arithmetic shared by the Xen 2.0 and Xen 3.0 time models.

Xen never keeps wall-clock time as a free-running clock: it keeps the UTC time
that corresponds to one system-time instant (Xen 2.0: ``wc_sec``/``wc_usec``
paired with ``stime_irq``; Xen 3.0: ``wc_sec``/``wc_nsec`` at system time 0) and
everything else is that base plus elapsed system time. DOM0_SETTIME only moves
the base.

All fields Xen publishes are 32-bit (``unsigned long`` on x86_32, ``u32`` in
shared_info); results are truncated the same way.
"""

from __future__ import annotations

__all__ = [
    "USEC_PER_SEC",
    "NSEC_PER_SEC",
    "mktime",
    "normalize_usec",
    "wallclock_at",
    "xen2_settime",
    "xen3_settime",
    "xen3_wallclock_at",
]

USEC_PER_SEC = 1_000_000
NSEC_PER_SEC = 1_000_000_000
_U32 = 0xFFFF_FFFF


def _c_div(a: int, b: int) -> int:
    """C99 integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def mktime(year: int, mon: int, day: int, hour: int, minute: int, sec: int) -> int:
    """Seconds since 1970-01-01 UTC for a Gregorian date; mirrors ``mktime``
    in xen/arch/x86/time.c (Gauss's formula), which turns the CMOS RTC reading
    into Xen 2.0's initial ``wc_sec`` in ``init_xen_time``. u32 like Xen's
    ``unsigned long``."""
    mon -= 2
    if mon <= 0:  # 1..12 -> 11,12,1..10: put Feb last since it has a leap day
        mon += 12
        year -= 1
    days = year // 4 - year // 100 + year // 400 + 367 * mon // 12 + day + year * 365 - 719499
    return (((days * 24 + hour) * 60 + minute) * 60 + sec) & _U32


def normalize_usec(sec: int, usec: int) -> tuple[int, int]:
    """Carry/borrow ``usec`` into ``sec`` so that 0 <= usec < 10**6 (the loops
    HANDLE_USEC_OVERFLOW/UNDERFLOW in XenLinux and mini-os time.c)."""
    carry, usec = divmod(usec, USEC_PER_SEC)
    return sec + carry, usec


def wallclock_at(wc_sec: int, wc_usec: int, stime_base: int, stime_now: int) -> tuple[int, int]:
    """Wall clock (sec, usec) at system time ``stime_now`` given that it read
    (``wc_sec``, ``wc_usec``) at system time ``stime_base``: Xen 2.0 advances
    wc and stime_irq together, so wall = wc + (now - stime_base). Elapsed ns are
    floored to whole µs (a guest's gettimeofday has µs resolution)."""
    return normalize_usec(wc_sec, wc_usec + (stime_now - stime_base) // 1000)


def xen2_settime(secs: int, usecs: int, system_time_base: int, stime_irq: int) -> tuple[int, int]:
    """New (wc_sec, wc_usec) for DOM0_SETTIME; mirrors ``do_settime`` in
    xen/arch/x86/time.c @2.0.0.

    Domain 0 says "UTC was (secs, usecs) at system time ``system_time_base``";
    Xen's wc pair belongs to ``stime_irq``, so it adds the difference,
    truncated to µs with C division. Deviation: Xen 2.0 only carries upward;
    when ``system_time_base`` is later than ``stime_irq`` it would store a
    negative ``long`` into the unsigned ``wc_usec``; here we borrow from
    ``wc_sec`` instead so the published pair stays a valid time.
    """
    delta = stime_irq - system_time_base
    _usecs = usecs + _c_div(delta, 1000)
    secs, _usecs = normalize_usec(secs, _usecs)
    return secs & _U32, _usecs


def xen3_settime(secs: int, nsecs: int, system_time_base: int) -> tuple[int, int]:
    """(wc_sec, wc_nsec) = UTC at system time 0; mirrors ``do_settime`` in
    xen/arch/x86/time.c @3.0.0 (u64 arithmetic, ``do_div`` by 10**9)."""
    x = (secs * NSEC_PER_SEC + nsecs - system_time_base) & ((1 << 64) - 1)
    q, r = divmod(x, NSEC_PER_SEC)
    return q & _U32, r


def xen3_wallclock_at(wc_sec: int, wc_nsec: int, stime_now: int) -> tuple[int, int]:
    """Wall clock (sec, nsec) at system time ``stime_now`` under Xen 3.0's
    convention (wc is UTC at system time 0)."""
    carry, nsec = divmod(wc_nsec + stime_now, NSEC_PER_SEC)
    return wc_sec + carry, nsec
