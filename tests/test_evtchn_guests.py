"""Event channels seen from inside domains: a cross-PCPU ping-pong that counts every
event, a loopback channel, event_channel_op errors, VIRQ_DOM_EXC to Domain-0, and
the failsafe callback."""
import pytest

from smpxen.testing import console_values, run_up, write_config

ROUND_TRIPS = 20_000


def pingpong_config(count: int) -> str:
    return f"""
[machine]
cpus = 2
memory_mib = 16
[[domain]]
name = "responder"
kernel = "evtchn_pingpong"
cpu = 0
cmdline = "self={{domid}} peer=2 count={count}"
[[domain]]
name = "initiator"
kernel = "evtchn_pingpong"
cpu = 1
cmdline = "self={{domid}} peer=1 count={count}"
"""


@pytest.mark.timeout(90)
def test_pingpong_across_pcpus_loses_and_duplicates_nothing(tmp_path, no_leaks):
    result = run_up("--config", write_config(tmp_path, pingpong_config(ROUND_TRIPS)), "--quiet",
                    report_dir=tmp_path, timeout=90)
    assert result.status == 0, result.stderr
    resp = console_values(result.domain("responder"))
    init = console_values(result.domain("initiator"))
    assert resp["port"] == 1
    for side in (resp, init):
        assert (side["received"], side["duplicates"], side["lost"], side["rounds"]) == \
            (ROUND_TRIPS, 0, 0, ROUND_TRIPS), side
    assert 0 < init["rtt_median_us"] <= init["rtt_p99_us"]
    assert {d["name"]: d["pcpus_ran_on"] for d in result.report["domains"]} == \
        {"responder": [0], "initiator": [1]}
    sent = sum(p["ipis_sent"].get("ipi_evtchn_set", 0) for p in result.report["pcpus"])
    assert sent == 2 * ROUND_TRIPS      # every event crossed PCPUs by IPI


@pytest.mark.timeout(60)
def test_loopback_channel_upcalls_on_hypercall_return(tmp_path, no_leaks):
    cfg = write_config(tmp_path, """
[machine]
cpus = 1
memory_mib = 16
[[domain]]
name = "loop"
kernel = "evtchn_pingpong"
cpu = 0
cmdline = "self={domid} peer={domid} count=5000"
""")
    result = run_up("--config", cfg, "--quiet", report_dir=tmp_path, timeout=60)
    assert result.status == 0, result.stderr
    v = console_values(result.domain("loop"))
    assert (v["received"], v["duplicates"], v["lost"], v["rounds"]) == (5000, 0, 0, 5000)
