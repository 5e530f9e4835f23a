"""Running a sweep into DIR:

    DIR/sweep.json            what was asked (grid, repeats, up arguments, plots) and the host
    DIR/config.toml           the base config, when the experiment file holds it inline
    DIR/runs/<point>/         report.json, console.txt, stderr.txt, command.txt, run.json
    DIR/summary.csv           one row per run (smpxen/sweep/summary.py), rewritten after each

A point's directory appears only when its run has ended (it is written under
runs/.partial-* and renamed), and run.json records the point's identity (a hash of
the config text, its --set items, environment, up arguments and timeout): a rerun
of the same command skips points whose run.json matches and whose report.json
reads, and runs the rest. Ctrl-C (or SIGTERM) stops the running machine the way
Ctrl-C stops `smpxen up`, removes its partial directory and keeps every finished
point. One sweep at a time per DIR (DIR/.lock).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from smpxen.sweep.grid import Point, Sweep, SweepError, check, host_info
from smpxen.sweep.progress import Progress
from smpxen.sweep.runner import execute, task_for
from smpxen.sweep.summary import read_csv, run_row, write_csv  # noqa: F401  (read_csv: API)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _lock(out: Path):
    f = open(out / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise SweepError(f"{out} is in use by another smpxen sweep") from None
    return f


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stored_outcome(rundir: Path, point: Point) -> dict | None:
    """The stored outcome of a finished run of this very point, or None."""
    meta = _read_json(rundir / "run.json")
    if not isinstance(meta, dict) or meta.get("identity") != point.identity:
        return None
    report = _read_json(rundir / "report.json")
    if not isinstance(report, dict) or "exit_status" not in report:
        return None
    try:
        stderr = (rundir / "stderr.txt").read_text(errors="replace")
    except OSError:
        stderr = ""
    return {**meta, "report": report, "stderr": stderr}


def store(outcome: dict, point: Point, runs: Path, workdir: Path | None = None) -> None:
    """Write a run's files and move them into runs/<point> in one rename."""
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=".partial-", dir=runs))
    try:
        if outcome.get("report") is not None:
            (tmp / "report.json").write_text(json.dumps(outcome["report"], indent=2) + "\n")
        (tmp / "console.txt").write_text(outcome.get("console") or "")
        (tmp / "stderr.txt").write_text(outcome.get("stderr") or "")
        (tmp / "command.txt").write_text(outcome["command"] + "\n")
        meta = {k: outcome.get(k) for k in ("name", "status", "elapsed_s", "host", "pid", "note",
                                            "command")}
        meta.update(identity=point.identity, values=point.values, repeat=point.repeat,
                    finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (tmp / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        final = runs / point.name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_sweep(sweep: Sweep, out: Path, executor: str = "local", scheduler: str | None = None,
              resource: str | None = None, stream=None) -> int:
    """Run every point not already done; returns the exit status (0 every run ended
    with status 0 or 3, 1 some run failed, 130/143 interrupted). Raises SweepError
    before anything runs."""
    stream = stream or sys.stderr
    points = check(sweep)
    if executor == "dask":
        from smpxen.sweep.dask_exec import require
        require(scheduler)
    elif executor != "local":
        raise SweepError(f"--executor: expected local or dask, got {executor!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM,)}

    def on_term(signum, _frame):
        raise Interrupted(signum)
    signal.signal(signal.SIGTERM, on_term)
    try:
        return _run_locked(sweep, points, out, executor, scheduler, resource, stream)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        lock.close()


def _run_locked(sweep, points, out, executor, scheduler, resource, stream) -> int:
    runs = out / "runs"
    runs.mkdir(exist_ok=True)
    for stale in runs.glob(".partial-*"):          # left by a sweep that was killed -9
        shutil.rmtree(stale, ignore_errors=True)
    if sweep.inline_config:
        path = out / "config.toml"
        path.write_text(sweep.config_text)
        sweep.config_path = path.resolve()
    info = sweep.to_dict()
    info.update(host=host_info(), argv=sys.argv, points=len(points), columns=sweep.columns)
    (out / "sweep.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    outcomes: dict[str, dict] = {}
    pending: list[Point] = []
    for p in points:
        o = stored_outcome(runs / p.name, p)
        if o is None:
            pending.append(p)
        else:
            outcomes[p.name] = o

    def write_summary():
        rows = [run_row(p.values, p.repeat, outcomes[p.name]) for p in points if p.name in outcomes]
        write_csv(out / "summary.csv", rows, sweep.columns)

    write_summary()
    progress = Progress(len(points), len(points) - len(pending), stream)
    if len(points) > len(pending):
        progress.say(f"sweep: {len(points) - len(pending)} of {len(points)} runs already done "
                     f"in {out}; running the other {len(pending)}")

    def finished(p: Point, outcome: dict, workdir: Path | None = None):
        store(outcome, p, runs, workdir)
        outcomes[p.name] = outcome
        write_summary()
        progress.finished(p.name, outcome.get("status"), outcome.get("elapsed_s"))

    status = 0
    try:
        if executor == "local":
            for p in pending:
                progress.start(p.name)
                tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=runs))
                try:
                    outcome = execute(task_for(sweep, p, sweep.config_path), tmp,
                                      tick=progress.draw)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                finished(p, outcome, tmp)
        else:
            from smpxen.sweep.dask_exec import run_on_cluster
            run_on_cluster([(p, task_for(sweep, p, sweep.config_path)) for p in pending],
                           scheduler, resource, finished, progress)
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        progress.say(f"sweep: interrupted ({signal.Signals(signum).name}); {len(outcomes)} of "
                     f"{len(points)} runs done are kept in {out}; run the same command to go on")
        status = 128 + signum
    finally:
        progress.close()
        write_summary()
    if status:
        return status
    failed = [(n, o) for n, o in outcomes.items() if o.get("status") not in (0, 3)]
    for n, o in failed:
        how = "killed" if o.get("status") is None else f"exit {o.get('status')}"
        stream.write(f"sweep: {n}: {how}: see {runs / n / 'stderr.txt'}\n")
    stream.write(f"sweep: {len(points) - len(failed)} of {len(points)} runs ended normally; "
                 f"summary in {out / 'summary.csv'}\n")
    stream.flush()
    return 1 if failed else 0
