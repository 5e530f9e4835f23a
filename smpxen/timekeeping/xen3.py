"""Xen 3.0's per-CPU time calibration, as pure integer arithmetic.

Mirrors xen/arch/x86/time.c @RELEASE-3.0.0. Each CPU keeps its own
(TSC stamp, local system time, master system time, scale) in a
:class:`CpuTime`, extrapolates system time from its *own* counter
(:func:`get_s_time`) and once per epoch re-fits its scale against the
platform ("master") timer (:func:`local_time_calibration`), warping forward
when it has fallen behind. In smpxen the machine process plays the platform
timer; what a PCPU knows of master time comes from its messages.

Widths follow Xen: u64 TSC, s64 system time, u32 fractions, x86_32
``scale_delta`` keeping bits 32..95 of a 64x32 product (mod 2^64).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from smpxen.arch.cint import M32, M64, s64

__all__ = [
    "EPOCH_NS",
    "TimeScale",
    "div_frac",
    "mul_frac",
    "scale_delta",
    "set_time_scale",
    "time_scale_hz",
    "ns_per_tick",
    "platform_stime",
    "CpuTime",
    "init_percpu_time",
    "get_s_time",
    "local_time_calibration",
    "VcpuTimeInfo",
    "vcpu_time_info",
    "guest_system_time",
]

_NS_PER_SEC = 1_000_000_000

#: ``#define EPOCH MILLISECS(1000)``: calibration period per CPU.
EPOCH_NS = 1_000_000_000



@dataclass(frozen=True, slots=True)
class TimeScale:
    """``struct time_scale``: ns = ((ticks << shift) * mul_frac) >> 32
    (a negative shift shifts right)."""

    shift: int
    mul_frac: int  # u32, a 0.32 fraction


def div_frac(dividend: int, divisor: int) -> int:
    """Mirror of ``div_frac``: the 0.32 fraction dividend/divisor, i.e.
    ``divl`` of dividend:0 by divisor. Xen ASSERTs dividend < divisor (else
    the quotient overflows 32 bits and ``divl`` raises #DE); so do we."""
    dividend &= M32
    divisor &= M32
    if not dividend < divisor:
        raise ValueError(f"div_frac({dividend}, {divisor}): needs dividend < divisor")
    return (dividend << 32) // divisor


def mul_frac(multiplicand: int, multiplier: int) -> int:
    """Mirror of ``mul_frac``: EDX of a 32x32 ``mul`` (a u32 times a 0.32
    fraction, truncated)."""
    return ((multiplicand & M32) * (multiplier & M32)) >> 32


def scale_delta(delta: int, scale: TimeScale) -> int:
    """Mirror of ``scale_delta``: shift the u64 delta (bits shifted out are
    lost), multiply by mul_frac and keep bits 32..95, mod 2^64. Relative
    to the exact ``delta * 2^shift * mul_frac / 2^32`` the result is floored
    (< 1 ns short) plus, for shift < 0, the dropped low bits of delta (< one
    shifted unit, i.e. < 1 ns for scales from :func:`set_time_scale`)."""
    delta &= M64
    if scale.shift < 0:
        delta >>= -scale.shift
    else:
        delta = (delta << scale.shift) & M64
    return ((delta * (scale.mul_frac & M32)) >> 32) & M64


def set_time_scale(ticks_per_sec: int) -> TimeScale:
    """Mirror of ``set_time_scale``: normalise ticks/s into (10^9, 2*10^9] by
    binary shifts, then mul_frac = div_frac(10^9, tps32).

    Deviation: 3.0.0's second loop is ``while (tps32 < 10^9)``, which for a
    tps32 of exactly 10^9 (a 1 GHz counter) calls div_frac(10^9, 10^9) and
    faults; later Xen uses ``<=``, as here and as the reference describes.
    """
    tps64 = int(ticks_per_sec) & M64
    if tps64 == 0:
        raise ValueError("set_time_scale: zero ticks per second")
    shift = 0
    while tps64 > 2 * _NS_PER_SEC:
        tps64 >>= 1
        shift -= 1
    tps32 = tps64 & M32
    while tps32 <= _NS_PER_SEC:
        tps32 <<= 1
        shift += 1
    return TimeScale(shift=shift, mul_frac=div_frac(_NS_PER_SEC, tps32))


def time_scale_hz(scale: TimeScale) -> int:
    """Counter frequency implied by a scale, as a guest computes it from
    vcpu_time_info: ((10^9 << 32) / mul) >> shift (<< for shift < 0)."""
    hz = (_NS_PER_SEC << 32) // scale.mul_frac
    return hz >> scale.shift if scale.shift >= 0 else hz << -scale.shift


def ns_per_tick(scale: TimeScale) -> Fraction:
    """Exact ns per counter tick a scale stands for (for analysis/tests)."""
    return Fraction(scale.mul_frac * 2 ** scale.shift, 1 << 32) if scale.shift >= 0 \
        else Fraction(scale.mul_frac, (1 << 32) << -scale.shift)


def platform_stime(count: int, platform_timer_stamp: int, stime_platform_stamp: int,
                   scale: TimeScale) -> int:
    """Mirror of ``read_platform_stime``: master system time from a 64-bit
    platform counter reading."""
    return s64(stime_platform_stamp + scale_delta(count - platform_timer_stamp, scale))


@dataclass(frozen=True, slots=True)
class CpuTime:
    """``struct cpu_time`` (minus its calibration timer)."""

    local_tsc_stamp: int      # u64: this CPU's TSC at the last calibration
    stime_local_stamp: int    # s64: local system time at that instant
    stime_master_stamp: int   # s64: master system time at that instant
    tsc_scale: TimeScale


def init_percpu_time(tsc_now: int, master_stime_now: int, tsc_scale: TimeScale) -> CpuTime:
    """Mirror of ``init_percpu_time``: both stamps start at master time (CPU 0
    uses 0; the caller passes it). ``tsc_scale`` comes from the CPU's own boot
    calibration (``set_time_scale`` in calibrate_tsc_bp/ap)."""
    return CpuTime(int(tsc_now) & M64, master_stime_now, master_stime_now, tsc_scale)


def get_s_time(cpu_time: CpuTime, tsc: int) -> int:
    """Mirror of ``get_s_time`` on this CPU: stime_local_stamp +
    scale_delta(tsc - local_tsc_stamp). No clamp: a TSC behind the stamp
    wraps to a huge u64 delta, exactly as in Xen (only possible if the
    counter is written backwards or a reading predates the stamp)."""
    return s64(cpu_time.stime_local_stamp
                + scale_delta(int(tsc) - cpu_time.local_tsc_stamp, cpu_time.tsc_scale))


def local_time_calibration(cpu_time: CpuTime, tsc_now: int, local_stime_now: int | None,
                           master_stime_now: int, epoch_ns: int = EPOCH_NS) -> CpuTime:
    """Mirror of ``local_time_calibration``; returns the new :class:`CpuTime`.

    Inputs are the three "instantaneous" readings Xen takes with IRQs off:
    this CPU's TSC, its local system time (``None`` computes
    ``get_s_time(cpu_time, tsc_now)``, which is what Xen does; pass another
    value only if it came from the same instant) and master system time.

    * Local time warps forward to master if it lags (slow clocks are fixed by
      jumping, never by running backwards).
    * If less than ``epoch_ns/2`` of master time elapsed since the last
      calibration, nothing is recorded and ``cpu_time`` itself is returned
      (so ``result is cpu_time`` means "skipped"; the warp is dropped too).
    * A local clock ahead of master by ``err`` gets an error factor
      div_frac(E, E + min(err, E)) (in [0.5, 1)) that slows it so it gives
      the lead back over the next epoch.
    * New mul_frac = div_frac(master_elapsed, tsc_elapsed) after shifting
      both to 32 bits (master < 2^31, master < tsc <= 2*master; the shift is
      recorded), times the error factor.
    * New stamps: (tsc_now, warped local time, master time).
    """
    if not 0 < epoch_ns <= M32 // 2:
        raise ValueError("epoch_ns must satisfy 0 < epoch_ns <= 2^31 - 1")
    curr_tsc = int(tsc_now) & M64
    curr_local = get_s_time(cpu_time, curr_tsc) if local_stime_now is None else local_stime_now
    curr_master = master_stime_now

    if curr_local < curr_master:
        curr_local = curr_master

    stime_elapsed64 = (curr_master - cpu_time.stime_master_stamp) & M64
    tsc_elapsed64 = (curr_tsc - cpu_time.local_tsc_stamp) & M64

    if s64(stime_elapsed64) < epoch_ns // 2:
        return cpu_time

    error_factor = 0
    if curr_local != curr_master:
        err = (curr_local - curr_master) & M64
        if err > epoch_ns:
            err = epoch_ns
        error_factor = div_frac(epoch_ns, (epoch_ns + err) & M32)

    # 0 < stime_elapsed < 2^31, so tsc can be shifted into (stime, 2*stime].
    while stime_elapsed64 != (stime_elapsed64 & M32) or stime_elapsed64 & 0x8000_0000:
        stime_elapsed64 >>= 1
        tsc_elapsed64 >>= 1
    stime_elapsed32 = stime_elapsed64

    tsc_shift = 0
    while tsc_elapsed64 > stime_elapsed32 * 2:
        tsc_elapsed64 >>= 1
        tsc_shift -= 1
    tsc_elapsed32 = tsc_elapsed64
    if tsc_elapsed32 == 0:
        # Xen: ASSERT(tsc_elapsed32 != 0), then an endless shift loop.
        raise ValueError("local_time_calibration: TSC did not advance over the epoch")
    while tsc_elapsed32 <= stime_elapsed32:
        tsc_elapsed32 = (tsc_elapsed32 << 1) & M32
        tsc_shift += 1

    calibration_mul_frac = div_frac(stime_elapsed32, tsc_elapsed32)
    if error_factor != 0:
        calibration_mul_frac = mul_frac(calibration_mul_frac, error_factor)

    return CpuTime(local_tsc_stamp=curr_tsc, stime_local_stamp=curr_local,
                   stime_master_stamp=curr_master,
                   tsc_scale=TimeScale(shift=tsc_shift, mul_frac=calibration_mul_frac))


class VcpuTimeInfo(NamedTuple):
    """``struct vcpu_time_info`` payload (public/xen.h @3.0.0), minus the
    version, which the writer brackets."""

    tsc_timestamp: int
    system_time: int
    tsc_to_system_mul: int
    tsc_shift: int  # s8


def vcpu_time_info(cpu_time: CpuTime) -> VcpuTimeInfo:
    """Values ``__update_dom_time`` publishes for a VCPU on this CPU."""
    return VcpuTimeInfo(cpu_time.local_tsc_stamp, cpu_time.stime_local_stamp & M64,
                        cpu_time.tsc_scale.mul_frac, cpu_time.tsc_scale.shift)


def guest_system_time(info: VcpuTimeInfo, tsc: int) -> int:
    """A 3.0 guest's extrapolation: system_time + ((tsc - tsc_timestamp) <<
    tsc_shift) * tsc_to_system_mul >> 32 — the same arithmetic as Xen's, so it
    equals :func:`get_s_time` for the same CPU and reading."""
    return s64(info.system_time + scale_delta(
        int(tsc) - info.tsc_timestamp, TimeScale(info.tsc_shift, info.tsc_to_system_mul)))
