"""Helpers for running whole machines from tests and benchmarks: write a config,
run `smpxen up` as a child process in its own session, and make sure nothing of
it survives (the process group is killed on the way out, whatever happened)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunResult:
    status: int
    stdout: str
    stderr: str
    report: dict | None

    def domain(self, name: str) -> dict:
        for d in self.report["domains"]:
            if d["name"] == name:
                return d
        raise KeyError(name)


def console_values(domain: dict) -> dict:
    """The "name=integer" lines a test guest printed (see runtime.s `report`)."""
    out = {}
    for line in domain["console"]:
        k, sep, v = line.partition("=")
        if sep and v.lstrip("-").isdigit():
            out[k] = int(v)
    return out


def write_config(directory: Path, text: str, name: str = "machine.toml") -> Path:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text))
    return path


OWNER_ENV = "SMPXEN_TEST_OWNER"
# pids of every machine process started through this module, for leak checks
started_machines: list[int] = []


def smpxen_command(*args) -> list[str]:
    return [sys.executable, "-m", "smpxen", *map(str, args)]


def machine_env(env=None) -> dict:
    """Environment for a machine started by a test: tagged with the test process's
    pid so leak checks find exactly our processes (PCPUs inherit it)."""
    env = dict(os.environ if env is None else env)
    env[OWNER_ENV] = str(os.getpid())
    return env


def spawn_machine(*args, **kw) -> subprocess.Popen:
    proc = subprocess.Popen(smpxen_command(*args), start_new_session=True,
                            env=machine_env(kw.pop("env", None)), **kw)
    started_machines.append(proc.pid)
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def run_up(*args, report_dir: Path, timeout: float = 60.0, env=None) -> RunResult:
    """Run `smpxen up <args> --report ...` to completion (or kill it after `timeout`)."""
    report = Path(report_dir) / "report.json"
    if report.exists():
        report.unlink()
    proc = spawn_machine("up", *args, "--report", report, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"smpxen up {' '.join(map(str, args))} did not finish in {timeout}s\n"
                             f"stdout:\n{out}\nstderr:\n{err}")
    finally:
        kill_group(proc)
    data = json.loads(report.read_text()) if report.exists() else None
    return RunResult(proc.returncode, out, err, data)


class LiveMachine:
    """A machine left running for `smpxen xm` (a context manager): `smpxen up` with a
    report, its control endpoint's tag read from its stderr; xm(...) runs the CLI,
    request(...) talks to the endpoint in this process; stop() ends it with SIGINT
    and returns its RunResult. Whatever happens, the process group goes."""

    def __init__(self, config: Path, report_dir: Path, *args, startup_s: float = 60.0):
        import threading
        import time
        self.report = Path(report_dir) / "report.json"
        self.proc = spawn_machine("up", "--config", config, "--report", self.report, *args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        self.tag = None
        started = threading.Event()

        def read_stderr():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                if self.tag is None and "control endpoint" in line:
                    self.tag = line.rsplit("--machine ", 1)[1].split()[0]
                    started.set()
            started.set()
        self._out: list[str] = []
        self._readers = [threading.Thread(target=read_stderr, daemon=True),
                         threading.Thread(target=lambda: self._out.extend(self.proc.stdout), daemon=True)]
        for t in self._readers:
            t.start()
        give_up = time.monotonic() + startup_s
        while not started.wait(0.1):
            if time.monotonic() > give_up:
                break
        if self.tag is None:
            kill_group(self.proc)
            raise AssertionError("the machine did not open its control endpoint:\n" + "".join(self.stderr_lines))

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Until a console line of the machine (its stdout) contains `text`."""
        import time
        give_up = time.monotonic() + timeout
        while not any(text in line for line in list(self._out)):
            if time.monotonic() > give_up or self.proc.poll() is not None:
                raise AssertionError(f"no console line with {text!r}:\n" + "".join(self._out)
                                     + "".join(self.stderr_lines))
            time.sleep(0.05)

    def xm(self, *args, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(smpxen_command("xm", "--machine", self.tag, *args), capture_output=True,
                              text=True, timeout=timeout, env=machine_env())

    def request(self, verb: str, *args) -> tuple[bool, str, str | None]:
        from smpxen.control.xm import find_machine, request
        endpoint, pid = find_machine(self.tag)
        return request(endpoint, verb, [str(a) for a in args], pid=pid)

    def stop(self, timeout: float = 30.0) -> RunResult:
        import json
        try:
            os.kill(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        finally:
            kill_group(self.proc)
        for t in self._readers:
            t.join(5)
        data = json.loads(self.report.read_text()) if self.report.exists() else None
        return RunResult(self.proc.returncode, "".join(self._out), "".join(self.stderr_lines), data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill_group(self.proc)
