"""`smpxen sweep` end to end: one report per run, the summary, skipping finished
points, checks before anything runs, Ctrl-C, and the dask executor on a real
LocalCluster. Machines are small (1-2 PCPUs, spin guests of 200 000 iterations)
so each run takes a second or two."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from smpxen import testing
from support.configs import SPIN

# Runs `smpxen sweep` with dask and distributed made unimportable: the local
# executor must not need them.
NO_DASK = ("import sys; sys.modules.update(dask=None, distributed=None); "
           "from smpxen.cli import main; sys.argv[0] = 'smpxen'; main()")


def sweep_cmd(*args, no_dask=False):
    if no_dask:
        return [sys.executable, "-c", NO_DASK, "sweep", *map(str, args)]
    return testing.smpxen_command("sweep", *args)


def run_sweep(*args, no_dask=False, timeout=120, env=None):
    p = subprocess.run(sweep_cmd(*args, no_dask=no_dask), capture_output=True, text=True,
                       timeout=timeout, env=testing.machine_env(env), start_new_session=True)
    return p


def read_summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def machine_pids(out: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (out / "runs").glob("*/run.json")]


@pytest.mark.timeout(180)
def test_local_sweep_runs_grid_writes_reports_and_skips_done_points(tmp_path, no_leaks):
    cfg = testing.write_config(tmp_path, SPIN)
    out = tmp_path / "out"
    args = [cfg, "--out", out, "--cpus", "1,2", "--set", "machine.time_model=xen2,percpu",
            "--set", 'machine.name="a,b"', "--", "--quiet"]
    p = run_sweep(*args, no_dask=True)
    testing.started_machines.extend(machine_pids(out))
    assert p.returncode == 0, p.stderr
    rows = read_summary(out)
    assert [(r["machine.cpus"], r["machine.time_model"], r["machine.name"], r["repeat"])
            for r in rows] == [("1", "xen2", "a,b", "0"), ("1", "percpu", "a,b", "0"),
                               ("2", "xen2", "a,b", "0"), ("2", "percpu", "a,b", "0")]
    for r in rows:
        assert r["exit_status"] == "0" and r["pcpus"] == r["machine.cpus"]
        assert int(r["agg.spin_domains"]) == int(r["pcpus"]) and float(r["agg.spin_mips"]) > 0
        assert int(r["dom.spin0.loop_kcycles"]) > 0 and int(r["pcpu.hypercalls"]) > 0
        assert r["host.cpus"] == str(os.cpu_count()) and r["host.python"]
        assert float(r["host.load1"]) >= 0
    assert "dom.spin1.mips" in rows[-1] and rows[0]["dom.spin1.mips"] == ""
    runs = sorted(d.name for d in (out / "runs").iterdir())
    assert runs == sorted(f"machine.cpus={c},machine.time_model={m},machine.name=a_b,r=0"
                          for c in (1, 2) for m in ("xen2", "percpu"))
    one = out / "runs" / "machine.cpus=2,machine.time_model=percpu,machine.name=a_b,r=0"
    report = json.loads((one / "report.json").read_text())
    assert report["config"]["time_model"] == "percpu" and report["config"]["cpus"] == 2
    assert report["config"]["name"] == "a,b"
    assert (one / "command.txt").read_text().startswith(
        f"smpxen up --config {cfg} --report report.json --set machine.cpus=2 "
        f"--set machine.time_model=percpu")
    assert (one / "stderr.txt").exists() and (one / "console.txt").exists()
    assert not list((out / "runs").glob(".partial-*"))
    assert p.stderr.count("sweep: ") >= 5 and "4/4" in p.stderr

    # The same command again runs nothing; more repeats run only the new ones.
    before = {d.name: (d / "report.json").stat().st_mtime_ns for d in (out / "runs").iterdir()}
    p = run_sweep(*args, no_dask=True)
    assert p.returncode == 0, p.stderr
    assert "4 of 4 runs already done" in p.stderr
    assert {d.name: (d / "report.json").stat().st_mtime_ns for d in (out / "runs").iterdir()} == before
    p = run_sweep(cfg, "--out", out, "--cpus", "1", "--set", "machine.time_model=xen2,percpu",
                  "--set", 'machine.name="a,b"', "--repeat", "2", "--", "--quiet")
    testing.started_machines.extend(machine_pids(out))
    assert p.returncode == 0, p.stderr
    assert "2 of 4 runs already done" in p.stderr
    rows = read_summary(out)
    assert [(r["machine.time_model"], r["repeat"]) for r in rows] == \
        [("xen2", "0"), ("xen2", "1"), ("percpu", "0"), ("percpu", "1")]

    # A plot straight from the results directory.
    fig = tmp_path / "speedup.svg"
    p = subprocess.run(testing.smpxen_command("plot", out, "--kind", "xy", "--x", "machine.cpus",
                                              "--y", "timings_s.run_s", "--out", fig),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "median, bars min-max over repeats" in fig.read_text()


@pytest.mark.timeout(60)
def test_bad_grid_fails_before_anything_runs(tmp_path, no_leaks):
    cfg = testing.write_config(tmp_path, SPIN)
    out = tmp_path / "out"
    cases = [
        (["--cpus", "1,100"], "point machine.cpus=100: "),
        (["--set", "machine.time_model=xen2,xen9"], "machine.time_model: expected one of"),
        (["--set", "domain.4.cpu=0"], "--set domain.4.cpu: domain has 1 entry"),
        (["--set", "machine.cpus=1,,2"], "--set machine.cpus: empty value"),
        (["--derive", "domain.0.cpu={nope}"], "derive domain.0.cpu: {nope} is not a grid key"),
        (["--env", "1X=1"], "env.1X: not an environment variable name"),
        (["--", "--migrate", "ghost:5"], "--migrate: no domain named 'ghost'"),
        (["--", "--report", "x.json"], "--report is set by the sweep"),
        (["--", "--frobnicate"], "extra smpxen up arguments: No such option"),
        (["--executor", "dask"], "--executor dask needs"),
    ]
    for extra, msg in cases:
        p = run_sweep(cfg, "--out", out, *extra)
        assert p.returncode == 2, (extra, p.stderr)
        assert msg in p.stderr and p.stderr.startswith("smpxen sweep: "), (extra, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert not out.exists()


@pytest.mark.timeout(120)
def test_dask_executor_missing_says_what_to_install(tmp_path):
    cfg = testing.write_config(tmp_path, SPIN)
    p = run_sweep(cfg, "--out", tmp_path / "out", "--executor", "dask", "--scheduler",
                  "tcp://127.0.0.1:1", no_dask=True)
    assert p.returncode == 2
    assert p.stderr.strip() == ("smpxen sweep: --executor dask needs dask.distributed, which is "
                                "not installed: pip install 'smpxen[dask]'")
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_running_machine_and_keeps_finished_points(tmp_path, no_leaks):
    cfg = testing.write_config(tmp_path, SPIN)
    out = tmp_path / "out"
    # The first point ends at once; the second spins for minutes.
    proc = subprocess.Popen(
        testing.smpxen_command("sweep", cfg, "--out", out, "--set",
                               "domain.0.cmdline=100000,4000000000", "--", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=testing.machine_env(), start_new_session=True)
    try:
        machine = None
        give_up = time.monotonic() + 60
        while machine is None and time.monotonic() < give_up:
            time.sleep(0.2)
            if (out / "summary.csv").exists() and len(read_summary(out)) == 1:
                for c in psutil.Process(proc.pid).children():
                    if "up" in c.cmdline() and "4000000000" in " ".join(c.cmdline()):
                        machine = c
        assert machine is not None, "the long point never started"
        testing.started_machines.append(machine.pid)
        time.sleep(1.0)
        assert machine.is_running() and len(machine.children()) == 1    # its PCPU
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        testing.kill_group(proc)
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT); 1 of 2 runs done are kept" in err
    assert not machine.is_running() or machine.status() == psutil.STATUS_ZOMBIE
    assert [d.name for d in (out / "runs").iterdir()] == ["domain.0.cmdline=100000,r=0"]
    rows = read_summary(out)
    assert [r["domain.0.cmdline"] for r in rows] == ["100000"]


@pytest.mark.timeout(240)
def test_dask_executor_on_a_local_cluster(tmp_path, no_leaks, monkeypatch):
    try:
        from distributed import LocalCluster
    except ImportError as e:
        pytest.skip(f"dask.distributed is not installed ({e}); pip install 'smpxen[dask]'")
    # Workers inherit the tag, so machines they start are found by the leak check.
    monkeypatch.setenv(testing.OWNER_ENV, str(os.getpid()))
    cfg = testing.write_config(tmp_path, SPIN)
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, resources={"smpxen": 1}) as cluster:
        p = run_sweep(cfg, "--out", out, "--cpus", "1,2", "--env", "SMPXEN_NO_FLUSH_CLOCK=0,1",
                      "--executor", "dask", "--scheduler", cluster.scheduler_address,
                      "--dask-resource", "smpxen", "--", "--quiet", timeout=200)
        testing.started_machines.extend(machine_pids(out))
        assert p.returncode == 0, p.stderr
        bad = run_sweep(cfg, "--out", tmp_path / "o2", "--executor", "dask", "--scheduler",
                        cluster.scheduler_address, "--dask-resource", "gpu")
        assert bad.returncode == 2 and "--dask-resource gpu: no worker offers it" in bad.stderr
    rows = read_summary(out)
    assert sorted((r["machine.cpus"], r["env.SMPXEN_NO_FLUSH_CLOCK"]) for r in rows) == \
        [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    for r in rows:
        assert r["exit_status"] == "0" and r["pcpus"] == r["machine.cpus"]
        assert float(r["agg.spin_mips"]) > 0
    for d in (out / "runs").iterdir():
        meta = json.loads((d / "run.json").read_text())
        report = json.loads((d / "report.json").read_text())
        assert report["exit_status"] == 0 and report["config"]["cpus"] == meta["values"]["machine.cpus"]
        assert (d / "command.txt").read_text().startswith(
            f"SMPXEN_NO_FLUSH_CLOCK={meta['values']['env.SMPXEN_NO_FLUSH_CLOCK']} smpxen up")
    assert not list((out / "runs").glob(".partial-*"))
