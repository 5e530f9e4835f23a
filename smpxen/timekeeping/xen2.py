"""Xen 2.0's single global timebase, as pure integer arithmetic.

Mirrors xen/arch/x86/time.c @RELEASE-2.0.0 (and, for the guest side, XenLinux
2.6.9-xen ``arch/xen/i386/kernel/timers/timer_tsc.c`` / ``time.c``). The state
Xen keeps in file-static variables is split here into two immutable values:

* :class:`Xen2Scale` — fixed after boot: ``cpu_freq``, ``rdtsc_bitshift``,
  ``st_scale_i``/``st_scale_f`` (``time_init`` + ``init_xen_time``);
* :class:`Xen2Stamp` — rewritten by every 10 ms PIT tick on the timer CPU:
  ``full_tsc_irq``, ``shifted_tsc_irq``, ``stime_irq``, ``wc_sec``, ``wc_usec``.

Every CPU computes system time from the *global* stamp with its *own* TSC
(:func:`get_s_time`), "assuming the cycle counters are synchronised between
CPUs" (interface.tex). Nothing here corrects skew or drift; that is the point
of the model.

Integer widths follow x86_32: u32 for the shifted window and scale halves,
u64 for the full TSC, s64 for system time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from smpxen.arch.cint import M32, M64, s32, s64

from .wallclock import USEC_PER_SEC, xen2_settime

__all__ = [
    "HZ",
    "TICK_NS",
    "TICK_USEC",
    "CLOCK_TICK_RATE",
    "CALIBRATE_FRAC",
    "CALIBRATE_LATCH",
    "CALIBRATE_WINDOW_NS",
    "Xen2Calibration",
    "Xen2Scale",
    "Xen2Stamp",
    "SharedTimeFields",
    "time_init",
    "rdtsc_bitshift_for",
    "init_scale",
    "init_stamp",
    "timer_tick",
    "get_time_delta",
    "get_s_time",
    "do_settime",
    "update_dom_time",
    "GuestTscParams",
    "guest_init_tsc",
    "guest_get_offset_usec",
    "guest_system_time",
    "guest_gettimeofday",
]


HZ = 100                                   # xen/include/asm-x86/config.h
TICK_NS = 1_000_000_000 // HZ              # stime_irq += MILLISECS(1000/HZ)
TICK_USEC = USEC_PER_SEC // HZ             # wc_usec += 1000000/HZ

CLOCK_TICK_RATE = 1_193_180                # PIT crystal, Hz
CALIBRATE_FRAC = 20                        # calibrate over 1/20 s
CALIBRATE_LATCH = (CLOCK_TICK_RATE + CALIBRATE_FRAC // 2) // CALIBRATE_FRAC  # 59659
#: Length of the PIT ch2 calibration window: LATCH PIT ticks. 1193180 is
#: 20 * 59659, so this is exactly 50 ms (the +10 rounding changes nothing)
#: and cpu_freq = ticks * 20 is the counter's true rate to within 20 Hz.
CALIBRATE_WINDOW_NS = CALIBRATE_LATCH * 1_000_000_000 // CLOCK_TICK_RATE




# --------------------------------------------------------------------------
# Boot: calibration and scale


@dataclass(frozen=True, slots=True)
class Xen2Calibration:
    """What ``time_init`` derives from the TSC ticks seen in the PIT window."""

    ticks_per_frac: int   # TSC ticks in the 1/20 s PIT window
    cpu_freq: int         # Hz = ticks_per_frac * CALIBRATE_FRAC
    cpu_khz: int          # ticks_per_frac / (1000 / CALIBRATE_FRAC)
    ticks_per_usec: int   # ticks_per_frac / (1000000 / CALIBRATE_FRAC)


def time_init(ticks_per_frac: int) -> Xen2Calibration:
    """Mirror of ``time_init``/``calibrate_tsc`` (time.c @2.0.0): a PCPU reads
    its counter at the start and end of :data:`CALIBRATE_WINDOW_NS` and passes
    the difference here. Zero ticks is Xen's "Error calibrating TSC" panic.
    (The i386 ``diff`` 32-bit check in calibrate_tsc is under a misspelt
    ``#if defined(_i386__)`` and never compiled, so it is not applied.)"""
    ticks_per_frac = int(ticks_per_frac) & M64
    if ticks_per_frac == 0:
        raise ValueError("Error calibrating TSC")
    return Xen2Calibration(
        ticks_per_frac=ticks_per_frac,
        cpu_freq=ticks_per_frac * CALIBRATE_FRAC,
        cpu_khz=(ticks_per_frac // (1000 // CALIBRATE_FRAC)) & M32,
        ticks_per_usec=(ticks_per_frac // (1_000_000 // CALIBRATE_FRAC)) & M32,
    )


def rdtsc_bitshift_for(cpu_freq: int) -> int:
    """Bit length of floor(cpu_freq / 10^9): the loop in ``init_xen_time``.
    One unit of ``tsc >> bitshift`` is then longer than 1 ns (at most 2 ns
    from 1 GHz up), so the 32-bit window ``(u32)(tsc >> bitshift)`` wraps no
    sooner than 2^32 ns (~4.3 s) and a signed delta covers >= ~2.1 s."""
    return (int(cpu_freq) // 1_000_000_000).bit_length()


@dataclass(frozen=True, slots=True)
class Xen2Scale:
    """Boot-time constants of Xen 2.0 time (``init_xen_time``)."""

    cpu_freq: int
    rdtsc_bitshift: int
    st_scale_i: int   # ns per shifted tick, integer part (u32)
    st_scale_f: int   # ns per shifted tick, 0.32 fraction (u32)

    @property
    def scale(self) -> int:
        """The 32.32 fixed-point ns per shifted tick, st_scale_i:st_scale_f."""
        return (self.st_scale_i << 32) | self.st_scale_f


def init_scale(cpu_freq: int, *, wide: bool = False) -> Xen2Scale:
    """Mirror of the scale part of ``init_xen_time``:
    ``scale = (10^9 << (32 + rdtsc_bitshift)) / cpu_freq`` split in halves.

    Raises for cpu_freq >= 4 GHz: there bitshift >= 3 and Xen 2.0's 64-bit
    ``10^9 << 35`` overflows, giving a wrong scale; and for cpu_freq <= 0.
    ``wide=True`` is smpxen's deviation for faster counters: the numerator is
    computed without the 64-bit limit. Only the intermediate overflows; the
    scale itself (1 to 2 ns per shifted tick from 1 GHz up) fits its u32
    halves at any frequency, and the shifted window still spans >= ~2.1 s.
    """
    cpu_freq = int(cpu_freq)
    if cpu_freq <= 0:
        raise ValueError("cpu_freq must be positive")
    shift = rdtsc_bitshift_for(cpu_freq)
    numer = 1_000_000_000 << (32 + shift)
    if numer > M64 and not wide:
        raise ValueError(
            f"cpu_freq {cpu_freq} Hz: Xen 2.0's scale computation overflows 64 bits "
            "at 4 GHz and above (rdtsc_bitshift >= 3)")
    scale = numer // cpu_freq
    return Xen2Scale(cpu_freq=cpu_freq, rdtsc_bitshift=shift,
                     st_scale_i=(scale >> 32) & M32, st_scale_f=scale & M32)


# --------------------------------------------------------------------------
# The global stamp


@dataclass(frozen=True, slots=True)
class Xen2Stamp:
    """Xen 2.0's ``time_lock``-protected globals (time.c @2.0.0)."""

    full_tsc_irq: int     # u64: timer CPU's TSC at the last tick
    shifted_tsc_irq: int  # u32: (u32)(full_tsc_irq >> rdtsc_bitshift)
    stime_irq: int        # s64: system time (ns since boot) at the last tick
    wc_sec: int           # u32: UTC seconds at stime_irq
    wc_usec: int          # u32: µs, 0..999999


def _stamp_tsc(full_tsc: int, scale: Xen2Scale) -> tuple[int, int]:
    full = int(full_tsc) & M64
    return full, (full >> scale.rdtsc_bitshift) & M32


def init_stamp(full_tsc: int, scale: Xen2Scale, wc_sec: int, wc_usec: int = 0) -> Xen2Stamp:
    """Mirror of the stamp part of ``init_xen_time``: system time ticks from
    zero at ``full_tsc``; wall clock starts at the RTC (``wc_usec`` stays 0 in
    Xen, exposed here for tests)."""
    full, shifted = _stamp_tsc(full_tsc, scale)
    return Xen2Stamp(full, shifted, 0, int(wc_sec) & M32, int(wc_usec))


def timer_tick(stamp: Xen2Stamp, full_tsc: int, scale: Xen2Scale) -> Xen2Stamp:
    """Mirror of ``timer_interrupt`` (PIT IRQ0, HZ=100): record the TSC of the
    CPU taking the IRQ, advance wall clock by 10000 µs with carry and system
    time by exactly 10 ms. System time is thus tick-counted, not TSC-derived:
    if the PIT and the TSC disagree, the stamp and the extrapolation do too."""
    full, shifted = _stamp_tsc(full_tsc, scale)
    wc_sec, wc_usec = stamp.wc_sec, stamp.wc_usec + TICK_USEC
    if wc_usec >= USEC_PER_SEC:
        wc_usec -= USEC_PER_SEC
        wc_sec = (wc_sec + 1) & M32
    return Xen2Stamp(full, shifted, s64(stamp.stime_irq + TICK_NS), wc_sec, wc_usec)


def get_time_delta(local_tsc: int, stamp: Xen2Stamp, scale: Xen2Scale) -> int:
    """Mirror of ``get_time_delta``: ns since the stamp by the *local* TSC.

    The shifted 32-bit window makes the difference a signed 32-bit number of
    shifted ticks: only 2^31 << bitshift cycles (>= ~2.1 s) are representable
    as positive; later (or any reading behind the stamp, e.g. a CPU whose TSC
    lags the timer CPU's) the delta is negative and clamps to 0.
    """
    low = ((int(local_tsc) & M64) >> scale.rdtsc_bitshift) & M32
    delta_tsc = s32(low - stamp.shifted_tsc_irq)
    if delta_tsc < 0:
        delta_tsc = 0
    return ((delta_tsc * scale.st_scale_f) >> 32) + delta_tsc * scale.st_scale_i


def get_s_time(local_tsc: int, stamp: Xen2Stamp, scale: Xen2Scale, prev_now: int) -> int:
    """Mirror of ``get_s_time`` (``NOW()``): stime_irq + get_time_delta, never
    less than ``prev_now``. The caller stores the result as the next
    ``prev_now`` (Xen's function-static variable; in Xen 2.0 a single one
    shared, racily, by all CPUs)."""
    now = s64(stamp.stime_irq + get_time_delta(local_tsc, stamp, scale))
    return prev_now if now < prev_now else now


def do_settime(stamp: Xen2Stamp, secs: int, usecs: int, system_time_base: int) -> Xen2Stamp:
    """Mirror of ``do_settime`` (DOM0_SETTIME): rebase the wall-clock pair to
    ``stime_irq`` given "UTC was (secs, usecs) at ``system_time_base``". See
    :func:`wallclock.xen2_settime` for the one deviation (negative borrow)."""
    wc_sec, wc_usec = xen2_settime(secs, usecs, system_time_base, stamp.stime_irq)
    return replace(stamp, wc_sec=wc_sec, wc_usec=wc_usec)


class SharedTimeFields(NamedTuple):
    """The shared_info time fields ``update_dom_time`` writes between
    ``time_version1++`` and ``time_version2++`` (offsets 264..303)."""

    cpu_freq: int        # u64 @264
    tsc_timestamp: int   # u64 @280 (full_tsc_irq)
    system_time: int     # u64 @288 (stime_irq)
    wc_sec: int          # u32 @296
    wc_usec: int         # u32 @300


def update_dom_time(stamp: Xen2Stamp, scale: Xen2Scale) -> SharedTimeFields:
    """Values of ``update_dom_time`` (the caller does the version bracketing
    and the stores, on the PCPU owning the domain)."""
    return SharedTimeFields(scale.cpu_freq, stamp.full_tsc_irq, stamp.stime_irq & M64,
                            stamp.wc_sec, stamp.wc_usec)


# --------------------------------------------------------------------------
# Guest side: what XenLinux 2.6.9-xen does with those fields


@dataclass(frozen=True, slots=True)
class GuestTscParams:
    """XenLinux's ``cpu_khz`` and ``fast_gettimeoffset_quotient``."""

    cpu_khz: int
    fast_gettimeoffset_quotient: int  # µs per cycle, 0.32 fixed point


def guest_init_tsc(cpu_freq: int) -> GuestTscParams:
    """Mirror of XenLinux ``init_tsc`` (timers/timer_tsc.c): ``cpu_khz =
    cpu_freq / 1000`` and ``divl`` of 1000:0 by cpu_khz. The ``divl`` faults
    (#DE) unless cpu_khz > 1000, i.e. cpu_freq must exceed ~1 MHz."""
    cpu_khz = (int(cpu_freq) // 1000) & M32
    if cpu_khz <= 1000:
        raise ValueError(f"cpu_freq {cpu_freq} Hz: XenLinux's divl would overflow (#DE)")
    return GuestTscParams(cpu_khz, (1000 << 32) // cpu_khz)


def guest_get_offset_usec(tsc: int, tsc_timestamp: int, params: GuestTscParams,
                          clamp_negative: bool = True) -> int:
    """µs since the stamp: ``(u32)rdtsc - (u32)tsc_timestamp`` times the
    quotient, keeping EDX of the ``mull`` (XenLinux ``get_offset_tsc``).

    ``clamp_negative=True`` treats the 32-bit difference as signed and clamps
    a negative one to 0, as reference §2 and mini-os (``get_time_delta_usecs``)
    do. XenLinux 2.6.9-xen itself does not clamp: a TSC behind the stamp wraps
    to ~2^32 cycles, a jump of ~2^32/cycles-per-µs µs; pass
    ``clamp_negative=False`` to reproduce that.
    """
    delta = (int(tsc) - int(tsc_timestamp)) & M32
    if clamp_negative and delta & 0x8000_0000:
        delta = 0
    return (delta * params.fast_gettimeoffset_quotient) >> 32


def guest_system_time(tsc: int, system_time: int, tsc_timestamp: int, params: GuestTscParams,
                      clamp_negative: bool = True) -> int:
    """A guest's extrapolated system time, ns: ``system_time + offset_usec *
    1000`` (XenLinux ``do_timer_interrupt``), so µs resolution."""
    return system_time + 1000 * guest_get_offset_usec(tsc, tsc_timestamp, params, clamp_negative)


def guest_gettimeofday(tsc: int, wc_sec: int, wc_usec: int, tsc_timestamp: int,
                       params: GuestTscParams, clamp_negative: bool = True) -> tuple[int, int]:
    """Wall clock a guest derives: (wc_sec, wc_usec) + offset µs, with
    overflow carry (mini-os ``gettimeofday``, HANDLE_USEC_OVERFLOW)."""
    usec = wc_usec + guest_get_offset_usec(tsc, tsc_timestamp, params, clamp_negative)
    sec = wc_sec
    while usec >= USEC_PER_SEC:
        usec -= USEC_PER_SEC
        sec += 1
    return sec, usec
