"""TLB shootdown across PCPUs: Domain-0 on PCPU 1 revokes a frame from a domain
running on PCPU 0 (its first kernel page, which it keeps reading). The victim's
PCPU removes the mapping and flushes (an acknowledged IPI); the frame, back in
the pool, is handed out again only after every PCPU that may cache it flushed
(another acknowledged IPI). The victim can never read what the new owner writes:
its next access faults."""
import os

import pytest

from smpxen.testing import run_up, write_config

CONFIG = """
    [machine]
    cpus = 2
    memory_mib = 32
    [dom0]
    kernel = "mm_revoker"
    cmdline = "1"
    cpu = 1
    [[domain]]
    name = "victim"
    kernel = "mm_victim"
    cpu = 0
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("flush_clock", [True, False])
def test_revoked_frame_is_shot_down_before_reuse(flush_clock, tmp_path, no_leaks):
    env = dict(os.environ)
    if not flush_clock:
        env["SMPXEN_NO_FLUSH_CLOCK"] = "1"
    result = run_up("--config", write_config(tmp_path, CONFIG), report_dir=tmp_path,
                    timeout=60, env=env)
    dom0, victim = result.domain("dom0"), result.domain("victim")
    assert dom0["console"] == ["made_room=1", "revoked=1", "increase=1", "reused_same_frame=1",
                               "marker_written=1"], result.stderr
    assert dom0["ended"]["how"] == "shutdown"
    # The victim lost its page: it faulted in it, and never saw the new owner's data.
    assert victim["console"] == []
    assert victim["ended"]["how"] == "crashed"
    assert "#PF" in victim["ended"]["detail"] and " at 0xc0000" in victim["ended"]["detail"]
    mm0, mm1 = (p["mm"] for p in sorted(result.report["pcpus"], key=lambda p: p["index"]))
    assert mm1["revoke_ipis_sent"] == 1            # PCPU 0 removed the mapping itself
    assert mm1["reuse_flush_checks"] == 1
    # PCPU 0 had not flushed since the frame was freed: the reuse waited for its ack.
    assert mm1["tlb_flush_ipis_sent"] == 1 and mm1["tlb_shootdowns"] == 1
    calls = result.report["pcpus"][0]["ipis_received"]
    assert calls.get("ipi_call", 0) >= 2
