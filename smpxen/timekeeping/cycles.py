"""A physical CPU's cycle counter (TSC), driven by the host's clock.

Each PCPU process owns one :class:`CycleCounter`. Its configured frequency,
initial offset and drift make the counters of different PCPUs really differ,
which is what the time models (``xen2``: boot-time barrier sync + one global
stamp; ``percpu``: Xen 3.0 epoch calibration) must cope with.

The counter's parameters are deliberately kept out of reach: a time model may
only learn about a counter through :meth:`CycleCounter.read` (like ``rdtsc``)
and change it through :meth:`CycleCounter.write` (like ``wrmsr`` to MSR 0x10,
which Xen 2.0's ``synchronize_tsc_bp/ap`` use to zero all TSCs together).

Arithmetic is exact integer arithmetic on a rational rate, so a reading is a
pure function of the host instant and the last write; nothing accumulates
rounding error however often it is read.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["CycleCounter", "TSC_MASK"]

#: The TSC is a 64-bit counter; it wraps modulo 2**64.
TSC_MASK = (1 << 64) - 1

_NS_PER_SEC = 1_000_000_000


def _exact(x: int | float | str | Fraction) -> Fraction:
    # A float such as 2.4e9 or 12.5 (ppm) is meant as the decimal the user
    # typed, not as its binary approximation: go through its shortest repr.
    if isinstance(x, float):
        return Fraction(repr(x))
    return Fraction(x)


class CycleCounter:
    """Per-PCPU time-stamp counter.

    ``CycleCounter(freq_hz, offset=0, drift_ppm=0, origin_ns=0)`` reads
    ``offset`` at host instant ``origin_ns`` and then really ticks at
    ``freq_hz * (1 + drift_ppm / 1e6)`` cycles per host second. Give every
    PCPU of a machine the same ``origin_ns`` (e.g. the machine's boot instant
    on the shared ``time.monotonic_ns`` clock) so the configured offsets are
    the counters' true relative offsets.

    Readings never decrease between writes (an earlier host instant than one
    already seen reads as that later instant: a real counter does not run
    backwards if two host threads sample the clock out of order; instants
    before ``origin_ns`` read ``offset``) and wrap modulo 2**64.
    """

    __slots__ = ("_num", "_den", "_base_value", "_base_ns", "_last_ns")

    def __init__(
        self,
        freq_hz: int | float | str | Fraction,
        offset: int = 0,
        drift_ppm: int | float | str | Fraction = 0,
        origin_ns: int = 0,
    ) -> None:
        f = _exact(freq_hz)
        d = _exact(drift_ppm)
        if f <= 0:
            raise ValueError(f"cycle counter frequency must be > 0 Hz, got {freq_hz!r}")
        rate = f * (1 + d / 1_000_000)  # true cycles per host second
        if rate <= 0:
            raise ValueError(f"drift {drift_ppm!r} ppm stops or reverses the counter")
        per_ns = rate / _NS_PER_SEC
        self._num = per_ns.numerator
        self._den = per_ns.denominator
        self._base_value = int(offset) & TSC_MASK
        self._base_ns = int(origin_ns)
        self._last_ns = int(origin_ns)

    def read(self, host_ns: int) -> int:
        """The counter value at host instant ``host_ns`` (``rdtsc``)."""
        h = int(host_ns)
        if h < self._last_ns:
            h = self._last_ns
        else:
            self._last_ns = h
        ticks = (h - self._base_ns) * self._num // self._den
        return (self._base_value + ticks) & TSC_MASK

    def write(self, value: int, host_ns: int) -> None:
        """Set the counter to ``value`` at host instant ``host_ns`` (``wrmsr``).

        It keeps ticking at its true rate from there; the write resets the
        monotonic floor, so a counter written backwards reads backwards, as on
        hardware.
        """
        self._base_value = int(value) & TSC_MASK
        self._base_ns = int(host_ns)
        self._last_ns = int(host_ns)

    def __repr__(self) -> str:
        # Deliberately does not show the rate or offset (see module docstring).
        return f"<CycleCounter at {id(self):#x}>"
