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
