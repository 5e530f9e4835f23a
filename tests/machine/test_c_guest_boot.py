"""A guest written in C and compiled to a Xen 2.0 ELF boots on the machine."""
import re
import subprocess
from pathlib import Path

import pytest

from smpxen.testing import run_up, write_config

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_c_guest.sh"


@pytest.fixture(scope="module")
def c_guest(tmp_path_factory):
    out = tmp_path_factory.mktemp("cguest") / "hello.elf"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"no 32-bit C compiler here: {proc.stderr.strip()}")
    return out


@pytest.mark.timeout(60)
def test_c_guest_boots_on_two_pcpus(c_guest, tmp_path, no_leaks):
    cfg = write_config(tmp_path, f"""
        [machine]
        cpus = 2
        [dom0]
        kernel = "{c_guest}"
        cpu = 0
        cmdline = "dom0 in C"
        [[domain]]
        name = "cguest"
        kernel = "{c_guest}"
        memory_mib = 8
        cpu = 1
        cmdline = "domain {{domid}} ({{name}})"
        """)
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 0, result.stderr
    dom = result.domain("cguest")
    assert dom["console"][0] == "hello from C guest: domain 1 (cguest) on pcpu 1"
    assert re.fullmatch(r"nr_pages=(\d+)", dom["console"][1])[1] == str(8 << 20 >> 12)
    assert dom["ended"]["detail"] == "poweroff"
    assert result.domain("dom0")["console"][0] == "hello from C guest: dom0 in C on pcpu 0"
