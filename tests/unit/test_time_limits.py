"""The cycle-counter range the config accepts (2 MHz to 20 GHz, any 64-bit offset):
Xen 2.0's scale beyond 4 GHz and calibration across a counter wrap."""
from __future__ import annotations

import pytest

from smpxen.config import MAX_FREQ_MHZ, MIN_FREQ_MHZ
from smpxen.timekeeping import xen2
from smpxen.timekeeping.cycles import TSC_MASK, CycleCounter

NS = 1_000_000_000


@pytest.mark.parametrize("freq", [4_000_000_000, 5_000_000_000, 12_345_678_901,
                                  int(MAX_FREQ_MHZ * 1e6 * 1.001)])
def test_xen2_wide_scale_is_exact_beyond_4ghz(freq):
    with pytest.raises(ValueError):
        xen2.init_scale(freq)                  # Xen 2.0's own arithmetic overflows
    s = xen2.init_scale(freq, wide=True)
    assert s.scale == (NS << (32 + s.rdtsc_bitshift)) // freq
    assert 1 << 32 <= s.scale <= 2 << 32       # 1..2 ns per shifted tick: fits u32 halves
    stamp = xen2.init_stamp(0, s, 0)
    one_second = xen2.get_time_delta(freq, stamp, s)
    assert abs(one_second - NS) <= 2           # truncation of the shifted counter and scale


@pytest.mark.parametrize("freq", [int(MIN_FREQ_MHZ * 1e6 * 0.999), 1_000_000_000, 3_999_999_999])
def test_xen2_wide_scale_equals_xen_below_4ghz(freq):
    assert xen2.init_scale(freq, wide=True) == xen2.init_scale(freq)


class FakeTime:
    """The clock module's view of host time: 1 us passes per reading."""

    def __init__(self):
        self.now = 0

    def monotonic_ns(self):
        self.now += 1000
        return self.now

    def sleep(self, seconds):
        self.now += int(seconds * NS)


class FakePcpu:
    index = 0

    def __init__(self, t):
        self.t = t
        self.mailbox = self          # the clock talks to the machine through it

    def next_seq(self):
        return 1

    def send_machine(self, *args):
        pass

    def wait_reply(self, seq, what):
        return self.t.now            # the platform timer answers instantly


def _clock(monkeypatch, freq, offset):
    from smpxen.pcpu import clock as clock_mod
    t = FakeTime()
    monkeypatch.setattr(clock_mod, "time", t)
    c = clock_mod.PcpuClock.__new__(clock_mod.PcpuClock)
    c.tsc = CycleCounter(freq, offset, origin_ns=0)
    c.pcpu = FakePcpu(t)
    c.platform_rtts = []
    return c


def test_platform_sample_across_counter_wrap(monkeypatch):
    # The first sample's two readings (1 us apart, 2000 cycles) straddle 2^64.
    c = _clock(monkeypatch, 2_000_000_000, (1 << 64) - 3000)
    tsc, platform_ns, rtt = c.platform_sample()
    assert rtt == 2000
    assert tsc == 0                                  # (2^64 - 1000 + 1000) mod 2^64
    assert c.platform_rtts == [2000]


@pytest.mark.parametrize("offset", [0, (1 << 64) - 50_000_000, TSC_MASK])
def test_calibration_across_counter_wrap(monkeypatch, offset):
    # (1 << 64) - 50e6 wraps 25 ms into the 50 ms calibration window.
    c = _clock(monkeypatch, 2_000_000_000, offset)
    assert abs(c.calibrate_tsc() - 2_000_000_000) < 100_000
