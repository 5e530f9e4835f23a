"""Every probe in scripts/probes still shows its fact (docs/design.md cites them).

A probe checks the Unicorn, keystone or ZeroMQ behaviour smpxen relies on and exits
non-zero, saying which point no longer holds, when an upgrade changed it. Each
runs here as a user would run it, in its own process, with a short argument."""
import subprocess
import sys
from pathlib import Path

import pytest

PROBES = Path(__file__).resolve().parents[2] / "scripts" / "probes"

# probe -> arguments for a short run
SHORT_RUNS = {
    "ring_entry": [],
    "fault_state": [],
    "exit_address": [],
    "segment_limits": [],
    "paging_access": [],
    "descriptor_accessed": [],
    "ldt": [],
    "keystone_quirks": [],
    "lock_atomicity": ["300000"],
    "emu_stop_thread": ["100"],
    "slicing_cost": ["2"],
    "tb_coherence": [],
    "zmq_startup": ["300"],
    "stop_rollback": ["300"],
    "hook_eip_write": ["0.5"],
    "sealed_pages": [],
    "seal_cost": ["1"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("probe", sorted(SHORT_RUNS))
def test_probe_fact_holds(probe):
    run = subprocess.run([sys.executable, str(PROBES / f"{probe}.py"), *SHORT_RUNS[probe]],
                         capture_output=True, text=True, timeout=50)
    assert run.returncode == 0, f"{probe} exited {run.returncode}:\n{run.stdout}{run.stderr}"
    assert run.stdout.strip(), f"{probe} printed nothing"
