"""The control interface end to end: the ctrlif_demo guest as a domU and as Domain-0,
driven through the machine's domain controller (tests/support/ctrl_script.py runs
the machine with a script of controller calls), with Xen's strict console rule."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smpxen import testing
from smpxen.testing import console_values, write_config

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "ctrl_script.py"

CONFIG = """
[machine]
cpus = 2
console_io = "dom0"

[dom0]
kernel = "ctrlif_demo"
cpu = 0
cmdline = "timeout=60"

[[domain]]
name = "demo"
kernel = "ctrlif_demo"
memory_mib = 4
cpu = 1
cmdline = "timeout=60"

[[domain]]
name = "plain"
kernel = "hello"
memory_mib = 4
cpu = 1
cmdline = "hello from {{domid}} over its control ring"
{extra}
"""


def run_script(tmp_path, steps, extra="", migrate=None, timeout=90):
    cfg = write_config(tmp_path, CONFIG.format(extra=extra))
    report = tmp_path / "report.json"
    args = [sys.executable, str(SCRIPT), cfg, report, json.dumps(steps)]
    for m in migrate or ():
        args += ["--migrate", m]
    env = testing.machine_env()
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPT.parent.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    testing.started_machines.append(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        testing.kill_group(proc)
    calls = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    data = json.loads(report.read_text()) if report.exists() else None
    return proc.returncode, calls, data, err


def domain(report, name):
    return next(d for d in report["domains"] if d["name"] == name)


@pytest.mark.timeout(150)
def test_console_memory_and_shutdown_over_the_control_ring(tmp_path, no_leaks):
    steps = [
        ["wait", 1, "ready=1"], ["wait", 0, "ready=1"],
        ["call", "console_input", 1, "hello ring\n"],
        ["call", "console_input", 0, "hello dom0\n"],
        ["wait", 1, "input=hello ring"], ["wait", 0, "input=hello dom0"],
        ["call", "mem_set", 1, 600], ["wait", 1, "tot_pages=600"],
        ["call", "mem_set", 1, 1024], ["wait", 1, "tot_pages=1024"],
        ["call", "mem_set", 1, 1],
        ["call", "mem_set", 0, 100],
        ["call", "shutdown", 1, 1],
        ["wait", 1, "shutdown_request=1"],
        ["call", "console_input", 0, "halt\n"],
    ]
    status, calls, report, err = run_script(tmp_path, steps)
    assert status == 0, err
    demo, dom0, plain = domain(report, "demo"), domain(report, "dom0"), domain(report, "plain")
    # console over the ring: console_io refused (Xen's strict rule), the lines still arrive
    assert plain["console"] == [f"hello from {plain['id']} over its control ring on pcpu 1"]
    assert plain["hypercall_results"]["-EPERM"] == 1
    assert "input=hello ring" in demo["console"] and "input=hello dom0" in dom0["console"]
    v = console_values(demo)
    assert v["ctrl_if"] == 1 and v["shutdown_request"] == 1
    results = [c["result"] for c in calls if c["call"] == "mem_set" and "result" in c]
    assert [(r["target_pages"], r["status"], r["tot_pages"]) for r in results[:2]] == [(600, 1, 600), (1024, 1, 1024)]
    low = results[2]          # never below its bootstrap region: short, and it says so
    assert low["status"] == 0 and 1 < low["tot_pages"] < 32
    assert any(c.get("error", "").startswith("domain 0 is the controller's own domain") for c in calls)
    assert demo["ended"]["detail"] == "reboot" and demo["ended"]["how"] == "shutdown"
    assert dom0["ended"]["detail"] == "poweroff"
    assert sum(p["ctrl_if"].get("console_requests", 0) for p in report["pcpus"]) > 0


@pytest.mark.timeout(150)
def test_messages_in_flight_while_domains_move(tmp_path, no_leaks):
    """The demo domU moves between the PCPUs every 5 ms, Domain-0 every 7 ms, while
    the domU is sent 60 lines of input (all at once: the controller holds what its
    ring cannot) and memory targets, and Domain-0 a line at a time: every line comes
    back once, in order; every memory request is answered."""
    lines = [f"line {i:03d}" for i in range(60)]
    steps = [["wait", 1, "ready=1"], ["wait", 0, "ready=1"]]
    for i, text in enumerate(lines):
        steps.append(["call", "console_input", 1, text + "\n"])
        if i % 15 == 14:
            steps.append(["call", "mem_set", 1, 700 if i % 30 == 14 else 1000])
    for text in lines[:20]:
        steps += [["call", "console_input", 0, text + "\n"], ["wait", 0, f"input={text}"]]
    steps += [["wait", 1, f"input={lines[-1]}"], ["call", "shutdown", 1, 0],
              ["wait", 1, "shutdown_request=0"], ["call", "console_input", 0, "halt\n"]]
    status, calls, report, err = run_script(tmp_path, steps, migrate=["demo:5", "dom0:7"])
    assert status == 0, err
    demo, dom0 = domain(report, "demo"), domain(report, "dom0")
    for d, sent in ((demo, lines), (dom0, lines[:20])):
        echoed = [line[len("input="):] for line in d["console"] if line.startswith("input=")]
        assert echoed == sent, d["name"]
        assert len(d["pcpus_ran_on"]) == 2
    mem = [c["result"] for c in calls if c["call"] == "mem_set"]
    assert [(r["ok"], r["status"], r["tot_pages"]) for r in mem] == [(True, 1, 700), (True, 1, 1000)] * 2
    assert report["migrations"]["demo"] >= 10 and report["migrations"]["dom0"] >= 10
    assert all(c.get("returned") for c in calls if c["call"] == "console_input")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("asked", [True, False])
def test_up_input_reaches_domain0_only_when_asked(tmp_path, no_leaks, asked):
    """`smpxen up --input`: standard input is Domain-0's serial line (CONSOLEIO_read
    on VIRQ_CONSOLE); without the flag it is never read."""
    cfg = write_config(tmp_path, f"""
        [machine]
        cpus = 1
        [dom0]
        kernel = "ctrlif_demo"
        cmdline = "timeout={30 if asked else 1}"
        """)
    args = ["up", "--config", cfg] + (["--input"] if asked else [])
    proc = testing.spawn_machine(*args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate("hi there\nhalt\n", timeout=60)
    finally:
        testing.kill_group(proc)
    assert proc.returncode == 0, err
    if asked:
        assert "[d0 dom0] input=hi there" in out and "[d0 dom0] halting=1" in out
    else:
        assert "input=" not in out and "[d0 dom0] idle_timeout=1" in out
