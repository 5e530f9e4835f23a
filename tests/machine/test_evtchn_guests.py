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
    counts = {name: (v["received"], v["duplicates"], v["lost"], v["rounds"])
              for name, v in (("responder", resp), ("initiator", init))}
    assert counts == {"responder": (ROUND_TRIPS, 0, 0, ROUND_TRIPS),
                      "initiator": (ROUND_TRIPS, 0, 0, ROUND_TRIPS)}, (resp, init)
    assert 0 < init["rtt_median_us"] <= init["rtt_p99_us"]
    assert {d["name"]: d["pcpus_ran_on"] for d in result.report["domains"]} == \
        {"responder": [0], "initiator": [1]}
    sent = sum(p["ipis_sent"].get("ipi_evtchn_set", 0) for p in result.report["pcpus"])
    assert sent == 2 * ROUND_TRIPS      # every event crossed PCPUs by IPI
    # Each was timed where it arrived; those that woke a blocked domain (nearly all:
    # the peer blocks as soon as it has sent) until it ran.
    wake = [p["event_wake_us"] for p in result.report["pcpus"]]
    for step in ("wire", "handoff"):
        assert sum(w[step]["samples"] for w in wake) == 2 * ROUND_TRIPS, wake
        assert all(w[step]["min"] >= 0 for w in wake), wake
    assert 0 < sum(w["to_guest"]["samples"] for w in wake) <= 2 * ROUND_TRIPS, wake


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


ERRORS = """
[machine]
cpus = 2
memory_mib = 16
[dom0]
kernel = "evtchn_errors"
cpu = 0
cmdline = "self={domid} peer=1"
[[domain]]
name = "domu"
kernel = "evtchn_errors"
cpu = 1
cmdline = "self={domid} peer=0"
"""

EINVAL, EPERM, ESRCH, EFAULT, ENOSYS = -22, -1, -3, -14, -38
DOMU_EXPECTED = {
    "handshake_port": 1, "close_port0": EINVAL, "close_out_of_range": EINVAL,
    "close_free": EINVAL, "close_other_domain": EPERM, "send_port0": EINVAL,
    "send_free": EINVAL, "send_unbound": EINVAL, "status_unbound": 1, "status_unbound_dom": 1,
    "status_out_of_range": EINVAL, "status_other_domain": EPERM, "bind_virq_range": EINVAL,
    "bind_virq_twice_same": 1, "bind_virq_misdirect": 0, "bind_dom1_not_self": EPERM,
    "bind_free_remote": EPERM, "alloc_no_domain": ESRCH, "bind_pirq": EPERM,
    "bind_pirq_range": EINVAL, "unknown_cmd": ENOSYS, "bad_pointer": EFAULT,
    "loopback_ports_differ": 1, "double_bind_same_pair": 1, "loopback_event": 1,
    "close_bound": 0, "status_after_close": 1, "send_after_close": EINVAL,
    "close_twice": EINVAL, "events": 1,
}
DOM0_EXPECTED = {
    "dom0_dom_exc_port": 1, "dom0_offer_port": 2, "dom0_dom_exc_seen": 1,
    "dom0_dom_exc_events": 1, "dom0_status_peer": 0, "dom0_status_peer_state": 2,
}


@pytest.mark.timeout(60)
def test_event_channel_op_errors_and_dom_exc_to_dom0(tmp_path, no_leaks):
    """The domU checks event_channel_op's refusals from inside; its shutdown reaches
    Domain-0 (on the other PCPU) as VIRQ_DOM_EXC. Domain-0 listens before the domU
    can end: the domU first binds to a port Domain-0 offers after binding the VIRQ."""
    result = run_up("--config", write_config(tmp_path, ERRORS), "--quiet", report_dir=tmp_path,
                    timeout=60)
    assert result.status == 0, result.stderr
    assert console_values(result.domain("domu")) == DOMU_EXPECTED
    assert console_values(result.domain("dom0")) == DOM0_EXPECTED


FAILSAFE = """
[machine]
cpus = 1
memory_mib = 16
[[domain]]
name = "failsafe"
kernel = "failsafe_test"
cpu = 0
cmdline = "no_failsafe={flag}"
"""


@pytest.mark.timeout(60)
def test_failsafe_callback_when_segment_reload_faults(tmp_path, no_leaks):
    """Ring-3 DS/ES name a GDT entry the kernel then marks not-present: the next
    trap's entry reloads DS at ring 0, faults, and Xen enters the failsafe callback
    with the saved selectors below the frame of the bounce that failed."""
    result = run_up("--config", write_config(tmp_path, FAILSAFE.format(flag=0)), "--quiet",
                    report_dir=tmp_path, timeout=60)
    assert result.status == 0, result.stderr
    d = result.domain("failsafe")
    assert console_values(d) == {
        "set_gdt": 0, "update_descriptor": 0, "failsafe_count": 1, "failsafe_ds": 0x13,
        "failsafe_es": 0x13, "failsafe_cs": 0x0819, "failsafe_eip_is_handler": 1,
        "trap_from_cs": 0x082B}
    assert d["ended"]["how"] == "shutdown"


@pytest.mark.timeout(60)
def test_faulting_entry_without_failsafe_callback_crashes(tmp_path, no_leaks):
    result = run_up("--config", write_config(tmp_path, FAILSAFE.format(flag=1)), "--quiet",
                    report_dir=tmp_path, timeout=60)
    d = result.domain("failsafe")
    assert d["ended"]["how"] == "crashed"
    assert "no failsafe callback" in d["ended"]["detail"]
    assert "failsafe_count" not in console_values(d)


@pytest.mark.timeout(90)
def test_pingpong_with_a_peer_migrating_every_few_ms_completes_every_round(tmp_path, no_leaks):
    # Events sent while the mover is in flight between PCPUs (some reach the target
    # before the domain does) must wake it on arrival: it blocks between rounds.
    rounds = 5000
    cfg = write_config(tmp_path, f"""
[machine]
cpus = 3
memory_mib = 32
[dom0]
kernel = "evtchn_pingpong"
cpu = 0
cmdline = "self={{domid}} peer=1 count={rounds}"
[[domain]]
name = "mover"
kernel = "evtchn_pingpong"
cpu = 1
cmdline = "self={{domid}} peer=0 count={rounds}"
""")
    result = run_up("--config", cfg, "--quiet", "--migrate", "mover:3", "--timeout", "80",
                    report_dir=tmp_path, timeout=90)
    assert result.status == 0, result.stderr
    for name in ("dom0", "mover"):
        v = console_values(result.domain(name))
        assert (v["received"], v["duplicates"], v["lost"], v["rounds"]) == (rounds, 0, 0, rounds), (name, v)
    assert result.report["migrations"]["mover"] >= 50
    assert result.domain("mover")["pcpus_ran_on"] == [0, 1, 2]
