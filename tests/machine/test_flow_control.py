"""Flow control: a domain flooding a remote port and its console. Sends to a port
whose IPI is still on its way coalesce into it, so the flooded PCPU takes a bounded
number of IPIs; console output beyond a domain's bound is dropped at its PCPU and
noted; domains on the other PCPUs, the flooded one included, do their work."""
import pytest

from smpxen.testing import console_values, run_up, write_config

SENDS = 100_000
CHUNKS = 1000          # of 4000 bytes: 4 MB against a 64 KiB burst + 64 KiB/s bound


@pytest.mark.timeout(120)
def test_event_and_console_floods_are_bounded(tmp_path, no_leaks):
    cfg = write_config(tmp_path, f"""
[machine]
cpus = 3
memory_mib = 48
[[domain]]
name = "sink"
kernel = "evtchn_flood"
cpu = 1
cmdline = "self={{domid}} peer=2 sends={SENDS} console=0"
[[domain]]
name = "flooder"
kernel = "evtchn_flood"
cpu = 0
cmdline = "self={{domid}} peer=1 sends={SENDS} console={CHUNKS}"
[[domain]]
name = "work1"
kernel = "spin"
cpu = 1
cmdline = "100000000"
[[domain]]
name = "work2"
kernel = "spin"
cpu = 2
cmdline = "100000000"
""")
    result = run_up("--config", cfg, "--quiet", report_dir=tmp_path, timeout=120)
    assert result.status == 0, result.stderr
    flooder, sink = result.domain("flooder"), result.domain("sink")
    fv = console_values(flooder)
    assert (fv["sent"], fv["send_errors"]) == (SENDS, 0)
    assert console_values(sink)["received"] >= 1
    p0, p1 = result.report["pcpus"][0], result.report["pcpus"][1]
    # Every send left PCPU 0 as an IPI or was coalesced into one in flight, and PCPU 1
    # took exactly the IPIs sent.
    assert p0["events"]["events_forwarded"] + p0["events"]["events_coalesced"] == SENDS
    assert p0["events"]["events_coalesced"] > 0
    assert p1["ipis_received"]["ipi_evtchn_set"] == p0["events"]["events_forwarded"]
    # The console flood: most of it dropped at PCPU 0, the loss noted in place.
    assert flooder["console_bytes_dropped"] >= CHUNKS * 4000 - 2 * 64 * 1024 - 64 * 1024 * 30
    assert any(line.startswith("[smpxen: ") and "dropped" in line for line in flooder["console"])
    for name in ("work1", "work2"):
        assert any(line.startswith("spin done") for line in result.domain(name)["console"]), name
