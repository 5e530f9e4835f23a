"""A guest written in C and compiled to a Xen 2.0 ELF boots on the machine."""
import re
import subprocess
from pathlib import Path

import pytest

from smpxen.testing import LiveMachine, machine_env, run_up, smpxen_command, write_config

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


@pytest.mark.timeout(60)
def test_xm_creates_domains_from_the_elf(c_guest, tmp_path, no_leaks):
    """`xm create` of the ELF, by a path relative to the client's directory with
    options, and from a domain file naming it relative to the file."""
    cfg = write_config(tmp_path, """
        [machine]
        cpus = 2
        memory_mib = 32
        [dom0]
        kernel = "idle"
        cmdline = "dom0 idle"
        """)
    here = tmp_path / "client"
    here.mkdir()
    (tmp_path / "c.toml").write_text(f'name = "c2"\nkernel = "{c_guest}"\nmemory_mib = 4\n'
                                     'cmdline = "file {domid}"\n')
    (here / "c.toml").write_text(f'name = "c3"\nkernel = "../{c_guest.name}"\n')
    with LiveMachine(cfg, tmp_path) as m:
        m.wait_for("[d0 dom0] dom0 idle")

        def xm(*args):
            return subprocess.run(smpxen_command("xm", "--machine", m.tag, *args), cwd=here, capture_output=True,
                                  text=True, timeout=60, env=machine_env())
        r = xm("create", f"../../{c_guest.parent.name}/{c_guest.name}", "--name", "c1", "--memory", "2",
               "--cpu", "1", "--cmdline", "elf {domid} {name}")
        assert (r.returncode, r.stdout, r.stderr) == (0, "domain 1 (c1) created\n", ""), r.stderr
        assert xm("create", "../c.toml").stdout == "domain 2 (c2) created\n"
        r = xm("create", "c.toml")         # ../hello.elf from here/: no such file, one line
        assert r.returncode == 1
        assert r.stderr == f"xm: create: {here / 'c.toml'}: kernel: no such file: {tmp_path / c_guest.name}\n"
        m.wait_for("[d2 c2] nr_pages=1024")
        m.wait_for("[d1 c1] nr_pages=512")
        result = m.stop()
    assert result.domain("c1")["console"][0] == "hello from C guest: elf 1 c1 on pcpu 1"
    assert result.domain("c2")["console"][0].startswith("hello from C guest: file 2 on pcpu ")
