"""`smpxen up --set`: errors exit 2 in one line; the overridden machine runs."""
import subprocess

import pytest

from smpxen.testing import console_values, run_up, smpxen_command, write_config
from support.configs import BASE


def test_up_set_errors_exit_2_in_one_line(tmp_path):
    path = write_config(tmp_path, BASE)
    for args, expected in [
        (["--set", "machine.cpus=200"],
         f"smpxen: {path}: machine.cpus: must be between 1 and 128, got 200 (from --set machine.cpus=200)"),
        (["--set", "domain.7.name=z"],
         f"smpxen: {path}: --set domain.7.name: domain has 2 entries; index 7 is out of range"),
        (["--set", "machine.colour=blue"],
         f"smpxen: {path}: machine.colour: unknown key"),
    ]:
        p = subprocess.run(smpxen_command("up", "--config", path, "--report", tmp_path / "r.json",
                                          *args), capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert p.stderr.startswith(expected), p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "r.json").exists()


@pytest.mark.timeout(120)
def test_up_runs_the_overridden_machine(tmp_path, no_leaks):
    path = write_config(tmp_path, BASE)
    r = run_up("--config", path, "--quiet", "--set", "machine.cpus=1", "--set", "domain.1.kernel=spin",
               "--set", "domain.1.cmdline=300000", "--set", "machine.time_model=percpu",
               "--set", "clock.freq_mhz=3000", report_dir=tmp_path)
    assert r.status == 0, r.stderr
    assert r.report["config"]["time_model"] == "percpu"
    assert [c["freq_hz"] for c in r.report["config"]["clocks"]] == [3e9]
    b = r.domain("b")
    assert b["cmdline"] == "300000" and b["kernel"] == "spin"
    assert console_values(b)["loop_kcycles"] > 0
