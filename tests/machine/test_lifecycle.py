"""Every way a machine can end leaves no process and no /dev/shm segment behind."""
import os
import select
import signal
import subprocess
import time

import psutil
import pytest

from smpxen.testing import kill_group, run_up, spawn_machine, write_config

LONG = """
[machine]
cpus = 2
[dom0]
kernel = "hello"
cpu = 0
cmdline = "dom0 up"
[[domain]]
name = "spinner"
kernel = "spin"
cpu = 1
cmdline = "4000000000"
"""


def start_machine(tmp_path, text=LONG):
    """Start a machine and return once Domain-0 has printed its first line: by then
    both PCPUs are online and running guests, however loaded the host is."""
    cfg = write_config(tmp_path, text)
    proc = spawn_machine("up", "--config", cfg, "--report", tmp_path / "r.json",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline() if _readable(proc.stdout, 30) else ""
    kids = psutil.Process(proc.pid).children() if proc.poll() is None else []
    if "dom0 up" not in first or len(kids) != 2:
        kill_group(proc)
        raise AssertionError(f"the machine did not come up: {first!r}, {len(kids)} PCPUs")
    proc.first_line = first
    return proc, [k.pid for k in kids]


def _readable(stream, timeout: float) -> bool:
    return bool(select.select([stream], [], [], timeout)[0])


def finish(proc, within=10):
    try:
        out, err = proc.communicate(timeout=within)
    finally:
        kill_group(proc)
    return proc.returncode, getattr(proc, "first_line", "") + out, err


def gone(pids):
    return not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_machine_stops_everything(sig, status, tmp_path, no_leaks):
    proc, pcpus = start_machine(tmp_path)
    t = time.monotonic()
    proc.send_signal(sig)
    rc, out, err = finish(proc)
    assert rc == status, err
    assert time.monotonic() - t < 8
    assert f"{signal.Signals(sig).name} received" in err
    assert gone(pcpus)
    assert "[d0 dom0] dom0 up" in out


@pytest.mark.timeout(60)
def test_pcpu_killed_stops_machine(tmp_path, no_leaks):
    proc, pcpus = start_machine(tmp_path)
    os.kill(pcpus[1], signal.SIGKILL)
    rc, out, err = finish(proc)
    assert rc == 4, err
    assert f"(pid {pcpus[1]}) killed by signal 9 (SIGKILL)" in err
    assert gone(pcpus)


@pytest.mark.timeout(60)
def test_machine_killed_takes_pcpus_with_it(tmp_path, no_leaks):
    proc, pcpus = start_machine(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    give_up = time.monotonic() + 5
    while not gone(pcpus) and time.monotonic() < give_up:
        time.sleep(0.05)
    kill_group(proc)
    assert gone(pcpus)


@pytest.mark.timeout(60)
def test_timeout_option(tmp_path, no_leaks):
    cfg = write_config(tmp_path, LONG)
    result = run_up("--config", cfg, "--timeout", "1.5", report_dir=tmp_path)
    assert result.status == 3
    assert "still running: d1 spinner" in result.stderr
    assert result.domain("spinner")["ended"] is None
    assert result.domain("dom0")["ended"]["how"] == "shutdown"


CRASH = """
[machine]
cpus = 2
[[domain]]
name = "bad"
kernel = "crash_hlt"
cpu = 0
[[domain]]
name = "good"
kernel = "hello"
cpu = 0
cmdline = "still here"
"""


@pytest.mark.timeout(60)
def test_crashing_domain_leaves_others_running(tmp_path, no_leaks):
    cfg = write_config(tmp_path, CRASH)
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 1
    bad = result.domain("bad")
    assert bad["console"] == ["about to hlt"]
    assert bad["ended"]["how"] == "crashed"
    assert "#GP" in bad["ended"]["detail"] and "ring 1" in bad["ended"]["detail"]
    assert "domain 1 (bad) crashed on pcpu0" in result.stderr
    assert result.domain("good")["console"] == ["still here on pcpu 0"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text,needle", [
    ("[machine]\ncpus = 2\nbogus = 1\n[[domain]]\nkernel = 'hello'\n", "machine.bogus: unknown key"),
    ("[[domain]]\nkernel = 'nosuch.elf'\n", "domain[0].kernel: no such file"),
    ("[[domain]]\nkernel = 'hello'\nmemory_mib = 'four'\n", "domain[0].memory_mib: expected an integer"),
    ("[machine]\nmemory_mib = 16\n[[domain]]\nkernel = 'hello'\nmemory_mib = 64\n", "exceeds"),
])
def test_bad_config_is_one_clear_line(text, needle, tmp_path, no_leaks):
    cfg = write_config(tmp_path, text)
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(cfg) in lines[0], result.stderr
    assert result.report is None
