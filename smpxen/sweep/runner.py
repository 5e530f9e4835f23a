"""Running one point: `smpxen up` as a child process in its own session, its console
and stderr captured, its report read back. The same function runs in the sweep's
own process (the local executor) and on a dask worker (smpxen/sweep/dask_exec.py);
either way it returns an outcome dict and the client writes the files.

Stopping: whoever runs a point passes should_stop(); when it turns true (Ctrl-C
on the client, a stop event on a dask worker) the machine gets SIGINT, the way
Ctrl-C stops `smpxen up` (it halts and reaps its PCPUs and removes its shared
memory), then SIGKILL for its whole process group if it has not ended in time.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from smpxen.sweep.grid import host_info

# After the machine's own --timeout, how long before the sweep kills it.
KILL_GRACE_S = 60.0
# After SIGINT, how long a machine has to halt its PCPUs and exit.
INTERRUPT_GRACE_S = 20.0


class Stopped(Exception):
    """The run was stopped from outside (Ctrl-C, a dask stop event)."""


def task_for(sweep, point, config_path: Path) -> dict:
    """Everything needed to run a point, picklable (plain data) for a dask worker."""
    return {"name": point.name, "config_path": str(config_path),
            "config_name": Path(config_path).name, "config_text": sweep.config_text,
            "sets": list(point.sets), "env": dict(point.env), "up_args": list(sweep.up_args),
            "timeout": sweep.timeout}


def up_command(task: dict, config_file: str, report_file: str) -> list[str]:
    cmd = [sys.executable, "-m", "smpxen", "up", "--config", config_file, "--report", report_file]
    if task["timeout"] is not None:
        cmd += ["--timeout", repr(float(task["timeout"]))]
    for s in task["sets"]:
        cmd += ["--set", s]
    return cmd + list(task["up_args"])


def shown_command(task: dict, config_file: str) -> str:
    """The command as a person would type it (the report path is the sweep's)."""
    cmd = ["smpxen"] + up_command(task, config_file, "report.json")[3:]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in task["env"].items())
    return (env + " " if env else "") + shlex.join(cmd)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_machine(proc: subprocess.Popen) -> None:
    """SIGINT first (the machine cleans up after itself), SIGKILL the group if it lingers."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGINT)
        try:
            proc.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(proc, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def execute(task: dict, workdir: Path, should_stop: Callable[[], bool] = lambda: False,
            tick: Callable[[], None] = lambda: None, poll_s: float = 0.25) -> dict:
    """Run the point in workdir; returns the outcome: status (the exit status, None if
    the sweep had to kill it), report (dict or None), console, stderr, command,
    elapsed_s, host, pid, note. Raises Stopped (machine ended) if should_stop()."""
    workdir = Path(workdir)
    config_file = task["config_path"]
    try:
        same = Path(config_file).read_text() == task["config_text"]
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:      # e.g. a dask worker on another host: use the text the client sent
        config_file = str(workdir / task["config_name"])
        Path(config_file).write_text(task["config_text"])
    report_file = workdir / "report.json"
    env = dict(os.environ)
    env.update(task["env"])
    cmd = up_command(task, config_file, str(report_file))
    note = None
    t0 = time.monotonic()
    deadline = None if task["timeout"] is None else t0 + task["timeout"] + KILL_GRACE_S
    with open(workdir / "console.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=poll_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if should_stop():
                    raise Stopped()
                if deadline is not None and time.monotonic() > deadline:
                    note = (f"killed by the sweep: still running {KILL_GRACE_S:.0f} s after its "
                            f"--timeout {task['timeout']:g}")
                    break
                tick()
        finally:
            _stop_machine(proc)       # also on Ctrl-C (KeyboardInterrupt) and Stopped
    elapsed = time.monotonic() - t0
    status = None if note else proc.returncode
    report = None
    if report_file.exists():
        try:
            report = json.loads(report_file.read_text())
        except ValueError:
            note = (note + "; " if note else "") + "report.json is not valid JSON"
    return {"name": task["name"], "status": status, "report": report,
            "console": (workdir / "console.txt").read_text(errors="replace"),
            "stderr": (workdir / "stderr.txt").read_text(errors="replace"),
            "command": shown_command(task, config_file), "elapsed_s": round(elapsed, 3),
            "host": host_info(), "pid": proc.pid, "note": note}


def execute_in_tempdir(task: dict, should_stop: Callable[[], bool] = lambda: False,
                       tick: Callable[[], None] = lambda: None, parent: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=parent) as d:
        return execute(task, Path(d), should_stop, tick)
