"""The soak benchmark's code on a small scale (CI): events between two PCPUs, over
a loopback channel, and fast-trap system calls from ring 3, every count exact."""
import pytest

from smpxen.bench.soak import soak


@pytest.mark.timeout(240)
def test_short_soak_counts_are_exact(no_leaks):
    result = soak(cross_pcpu_round_trips=2_000, loopback_events=20_000, fast_trap_calls=20_000)
    assert result["cross_pcpu"] | {"seconds": 0} == {"events_sent": 4_000, "received": 4_000, "lost": 0,
                                                     "duplicated": 0, "seconds": 0}
    assert result["loopback"] | {"seconds": 0} == {"events_sent": 20_000, "received": 20_000, "lost": 0,
                                                   "duplicated": 0, "seconds": 0}
    assert result["fast_trap"] | {"seconds": 0} == {"calls": 20_000, "user_calls": 20_000,
                                                    "kernel_calls": 20_000, "bad_results": 0,
                                                    "seconds": 0}
    assert result["exact"]
