"""`smpxen xm console`, `console-input`, `shutdown` and `mem-set` against a running
machine (its control endpoint, smpxen/control/ctrl_verbs.py), with Xen's strict
console rule: the domUs' consoles are their control rings."""
import json
import subprocess
import threading
import time

import pytest

from smpxen.testing import kill_group, machine_env, smpxen_command, spawn_machine, write_config

CONFIG = """
[machine]
cpus = 2
memory_mib = 48
console_io = "dom0"

[dom0]
kernel = "ctrlif_demo"
cpu = 0
cmdline = "timeout=120"

[[domain]]
name = "demo"
kernel = "ctrlif_demo"
memory_mib = 4
cpu = 1
cmdline = "timeout=120"

[[domain]]
name = "plain"
kernel = "hello"
memory_mib = 4
cpu = 1
cmdline = "hello"
"""


def xm(pid, *args, stdin=None, timeout=60):
    return subprocess.run(smpxen_command("xm", "--machine", pid, *args), input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=machine_env())


class Machine:
    def __init__(self, tmp_path):
        self.report = tmp_path / "report.json"
        cfg = write_config(tmp_path, CONFIG)
        self.proc = spawn_machine("up", "--config", cfg, "--report", self.report, "--timeout", "120",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while xm(self.pid, "list").returncode != 0:     # until its endpoint answers
            assert time.monotonic() < deadline and self.proc.poll() is None, "the machine never answered"
            time.sleep(0.3)

    def finish(self):
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err, json.loads(self.report.read_text())


@pytest.fixture
def machine(tmp_path, no_leaks):
    m = Machine(tmp_path)
    try:
        yield m
    finally:
        kill_group(m.proc)


class Reader(threading.Thread):
    """Collects a process's stdout lines as they come."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines = stream, []
        self.start()

    def run(self):
        for line in self.stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"{text!r} never came: {self.lines}"
            time.sleep(0.05)


@pytest.mark.timeout(180)
def test_xm_console_memory_and_shutdown(machine):
    pid = machine.pid
    assert xm(pid, "console-input", "demo", "hello", "ring").returncode == 0
    r = xm(pid, "mem-set", "demo", "2")
    assert (r.returncode, r.stdout) == (0, "domain 1 (demo): 2 MiB (512 pages)\n"), r.stderr
    assert xm(pid, "list", "demo").stdout.splitlines()[1].split()[2] == "2"      # Mem(MB)
    r = xm(pid, "mem-set", "demo", "3")
    assert r.stdout == "domain 1 (demo): 3 MiB (768 pages)\n"
    # each refusal is one line and exit status 1
    for args, text in [(("mem-set", "demo", "5"), "domain 1's maximum is 4 MiB"),
                       (("mem-set", "0", "2"), "controller's own domain"),
                       (("mem-set", "plain", "2"), "domain 2 has ended"),
                       (("mem-set", "demo", "lots"), "expected an integer"),
                       (("shutdown", "nosuch"), "no domain named 'nosuch'"),
                       (("shutdown", "demo", "--reboot", "--halt"), "expected DOM [--reboot|--halt]"),
                       (("console",), "console: expected DOM")]:
        r = xm(pid, *args)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and text in r.stderr, (args, r.stderr)

    console = subprocess.Popen(smpxen_command("xm", "--machine", pid, "console", "demo"), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=machine_env())
    try:
        seen = Reader(console.stdout)
        seen.wait_for("input=hello ring")            # what it printed before: kept and shown
        console.stdin.write("typed at the console\n")
        console.stdin.flush()
        seen.wait_for("input=typed at the console")   # a line typed goes in, its echo comes out
        r = xm(pid, "shutdown", "demo", "--reboot", "--wait")
        assert r.stdout == "domain 1 (demo): reboot requested\ndomain 1 (demo) shut down (reboot)\n"
        assert console.wait(timeout=30) == 0          # the console ends with the domain
        seen.join(10)
        assert seen.lines[-1] == "[domain 1 (demo) shut down (reboot)]"
        assert "tot_pages=768" in seen.lines
    finally:
        console.kill()
        console.wait()

    # Domain-0's console: its input is the hypervisor's serial line (CONSOLEIO_read)
    console = subprocess.Popen(smpxen_command("xm", "--machine", pid, "console", "0"), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=machine_env())
    try:
        seen = Reader(console.stdout)
        seen.wait_for("ready=1")
        console.stdin.write("hello dom0\n")
        console.stdin.flush()
        seen.wait_for("input=hello dom0")
        console.stdin.write("halt\n")
        console.stdin.flush()
        assert console.wait(timeout=30) == 0
        seen.join(10)
        assert seen.lines[-1] == "[domain 0 (dom0) shut down (poweroff)]"
    finally:
        console.kill()
        console.wait()
    status, out, err, report = machine.finish()
    assert status == 0, err
    demo = next(d for d in report["domains"] if d["name"] == "demo")
    assert demo["ended"]["detail"] == "reboot"
    assert "input=typed at the console" in demo["console"]
    assert "[d0 dom0] input=hello dom0" in out and "[d0 dom0] halting=1" in out


@pytest.mark.timeout(180)
def test_domains_created_at_run_time_have_a_control_interface(machine):
    pid = machine.pid
    for name in ("late", "gone"):
        r = xm(pid, "create", "ctrlif_demo", "--name", name, "--memory", "4", "--cmdline", "timeout=120")
        assert r.returncode == 0, r.stderr
    # kernels without a control-interface driver: a request is never answered
    for name in ("mute", "doomed"):
        assert xm(pid, "create", "idle", "--name", name, "--memory", "1").returncode == 0
    # a paused domain with the driver: it answers once unpaused
    assert xm(pid, "create", "ctrlif_demo", "--name", "asleep", "--memory", "2", "-p").returncode == 0
    t0 = time.monotonic()
    mute, doomed, asleep = (subprocess.Popen(smpxen_command("xm", "--machine", pid, "shutdown", *args),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=machine_env())
                            for args in (["mute"], ["doomed", "--wait"], ["asleep"]))
    try:
        _in_flight_and_silent(pid, t0, mute, doomed)
        _out, err = asleep.communicate(timeout=30)
        assert asleep.returncode == 1 and err == ("xm: shutdown: domain 7 (asleep) did not answer within 10 s "
                                                  "(it is paused: it sees the request when unpaused); the "
                                                  "request stays in its control ring\n"), err
        assert xm(pid, "unpause", "asleep").returncode == 0
        r = subprocess.run(smpxen_command("xm", "--machine", pid, "console", "asleep"), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30, env=machine_env())
        assert r.stdout.endswith("[domain 7 (asleep) shut down (poweroff)]\n"), (r.stdout, r.stderr)
    finally:
        for p in (mute, doomed, asleep):
            p.kill()
            p.wait()
    # a client that leaves does not keep a worker of the endpoint busy: more consoles
    # than it has workers come and go, and it still answers
    for _ in range(3):
        clients = [subprocess.Popen(smpxen_command("xm", "--machine", pid, "console", "demo"),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=machine_env()) for _ in range(8)]
        time.sleep(1.0)
        for c in clients:
            c.kill()
            c.wait()
    assert xm(pid, "list", timeout=30).returncode == 0
    r = xm(pid, "shutdown", "demo", "--halt", "--wait")      # Xen 2.0's halt: a poweroff request
    assert r.stdout == "domain 1 (demo): poweroff requested\ndomain 1 (demo) shut down (poweroff)\n", r.stderr
    assert xm(pid, "console-input", "0", "halt").returncode == 0
    status, _out, err, report = machine.finish()
    assert status == 0, err
    late = next(d for d in report["domains"] if d["name"] == "late")
    assert "ctrl_if=1" in late["console"] and "tot_pages=256" in late["console"]


def _in_flight_and_silent(pid, t0, mute, doomed):
    """Requests to domains whose kernels have no control-interface driver: one
    destroyed while its request waits fails at once; the other times out with one line."""
    time.sleep(1.0)
    assert doomed.poll() is None                      # waiting for an answer that will not come
    assert xm(pid, "destroy", "doomed").returncode == 0
    _out, err = doomed.communicate(timeout=5)         # destroyed: the request fails at once
    assert doomed.returncode == 1 and err == "xm: shutdown: domain 6 was destroyed before it answered\n", err
    r = xm(pid, "mem-set", "late", "1")               # meanwhile: the others are served
    assert r.returncode == 0 and r.stdout.endswith("1 MiB (256 pages)\n"), r.stderr
    assert xm(pid, "destroy", "gone").returncode == 0
    r = xm(pid, "shutdown", "late", "--wait")
    assert r.stdout.endswith("(late) shut down (poweroff)\n"), r.stderr
    _out, err = mute.communicate(timeout=30)          # no answer: one line after 10 s, no hang
    assert mute.returncode == 1 and time.monotonic() - t0 >= 10
    assert err == ("xm: shutdown: domain 5 (mute) did not answer within 10 s (has its kernel a "
                   "control-interface driver?); the request stays in its control ring\n"), err
    assert xm(pid, "destroy", "mute").returncode == 0
