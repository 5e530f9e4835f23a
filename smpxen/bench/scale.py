"""`smpxen bench --group scale`: many PCPUs on few host cores.

- online_64_s, online_128_s: from forking the first PCPU to the last one online
  (the report's spawn_to_online_s) for a machine of that many PCPUs and one domain;
  beside it fork_floor_64_s / fork_floor_128_s, the same number of bare forks of
  this process (with the PCPU code imported, as the machine forks) that each open
  a ZeroMQ context and send one message to the parent over the same kind of
  socket: what starting that many processes costs on this host at all.
- idle_pcpu_cpu_pct: CPU an idle PCPU uses, per host core, over a window of a
  running 8-PCPU machine whose PCPU 0 spins (busy_pcpu_cpu_pct, the spinning one
  over the same window, is the reference: ~100 on a host with a core to spare).
- pcpu_memory_128: resident memory of the 128 PCPUs at the end of the run
  (RSS, and USS/PSS: what is each one's own).
Medians with spread over rounds (the host's load drifts)."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from smpxen.measure import summary
from smpxen.testing import machine_env, smpxen_command, write_config

ONLINE_SIZES = (64, 128)
IDLE_CPUS = 8
IDLE_WARMUP_S = 1.0
IDLE_WINDOW_S = 3.0


def _report(cpus: int) -> dict:
    from smpxen.bench.machine import _machine
    return _machine(f"[machine]\ncpus = {cpus}\n[[domain]]\nkernel = 'hello'\ncpu = 0\n")


def _bare_child(endpoint: str) -> None:
    import zmq
    from smpxen.ipc import endpoints, messages as M
    ctx = zmq.Context(io_threads=1)
    out = endpoints.connect_outbox(ctx, endpoint)
    out.send(M.encode(M.ONLINE, 0, os.getpid()))
    ctx.destroy(linger=1000)


def fork_floor_s(n: int) -> float:
    """n forks of this process, each sending one message over ZeroMQ, until all
    messages are in: the floor under bringing n PCPUs online."""
    import secrets
    import zmq
    from smpxen.ipc import endpoints
    from smpxen.machine import spawn
    spawn.preload()                      # the same imports the machine has when it forks
    endpoint = endpoints.machine_endpoint(f"bench-{secrets.token_hex(4)}")
    pids = []
    t = time.monotonic()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _bare_child(endpoint)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    ctx = zmq.Context(io_threads=1)     # after the forks, as the machine does
    try:
        inbox = endpoints.bind_inbox(ctx, endpoint)
        for _ in range(n):
            if not inbox.poll(120_000):
                raise RuntimeError(f"fork floor: a bare child did not report within 120 s")
            inbox.recv()
        elapsed = time.monotonic() - t
    finally:
        ctx.destroy(linger=0)
        for pid in pids:
            os.waitpid(pid, 0)
    return elapsed


def _cpu_ns(proc: psutil.Process) -> int:
    """CPU time of all the process's threads in ns (schedstat: the scheduler's own
    accounting, not the 10 ms ticks of cpu_times)."""
    total = 0
    for tid in os.listdir(f"/proc/{proc.pid}/task"):
        try:
            with open(f"/proc/{proc.pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass                         # a thread that just ended
    return total


def _pcpu_children(machine: psutil.Process) -> dict[int, psutil.Process]:
    out = {}
    for child in machine.children():
        try:
            name = child.name()
        except psutil.Error:
            continue
        if name.startswith("smpxen-pcpu"):
            out[int(name[len("smpxen-pcpu"):])] = child
    return out


def idle_pcpu_pct() -> dict:
    """CPU per PCPU (% of a host core) over IDLE_WINDOW_S of a machine whose PCPU 0
    spins and whose others have nothing to run."""
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        cfg = write_config(Path(d), f"[machine]\ncpus = {IDLE_CPUS}\n[[domain]]\nname = 'spin'\n"
                                    "kernel = 'spin'\ncpu = 0\ncmdline = '4200000000'\n")
        proc = subprocess.Popen(smpxen_command("up", "--config", cfg, "--quiet", "--timeout", 120),
                                env=machine_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            machine = psutil.Process(proc.pid)
            give_up = time.monotonic() + 120
            while len(pcpus := _pcpu_children(machine)) < IDLE_CPUS:
                if proc.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"idle benchmark machine did not start: {proc.stderr.read()!r}")
                time.sleep(0.05)
            time.sleep(IDLE_WARMUP_S)
            before = {i: _cpu_ns(p) for i, p in pcpus.items()}
            t = time.monotonic_ns()
            time.sleep(IDLE_WINDOW_S)
            after = {i: _cpu_ns(p) for i, p in pcpus.items()}
            window = time.monotonic_ns() - t
            if proc.poll() is not None:
                raise RuntimeError("the idle benchmark's spinning domain ended before the window")
        finally:
            proc.terminate()             # the machine halts its PCPUs and cleans up
            proc.wait(timeout=60)
    pct = {i: 100 * (after[i] - before[i]) / window for i in pcpus}
    return {"idle": summary([pct[i] for i in pct if i != 0], digits=3), "busy": round(pct[0], 1),
            "window_s": round(window / 1e9, 2)}


def run(progress, quick: bool = False) -> dict:
    rounds = 1 if quick else 3
    out: dict = {}
    online = {n: [] for n in ONLINE_SIZES}
    floor = {n: [] for n in ONLINE_SIZES}
    memory = None
    for i in range(rounds):                # interleaved: the host's load drifts
        for n in ONLINE_SIZES:
            progress(f"{n} PCPUs coming online, round {i + 1}/{rounds}")
            report = _report(n)
            online[n].append(report["timings_s"]["spawn_to_online_s"])
            if n == max(ONLINE_SIZES):
                memory = report["pcpus"]
            progress(f"floor: {n} bare forks reporting over ZeroMQ, round {i + 1}/{rounds}")
            floor[n].append(fork_floor_s(n))
    for n in ONLINE_SIZES:
        out[f"online_{n}_s"] = summary(online[n], digits=3)
        out[f"fork_floor_{n}_s"] = summary(floor[n], digits=3)
        out[f"online_{n}_vs_floor"] = round(out[f"online_{n}_s"]["median"] / out[f"fork_floor_{n}_s"]["median"], 2)
    mib = 1 << 20
    out[f"pcpu_memory_{max(ONLINE_SIZES)}_mib"] = {
        key: summary([p[f"{key}_bytes"] / mib for p in memory], digits=1) for key in ("rss", "uss", "pss")}
    progress(f"idle PCPUs: {IDLE_CPUS - 1} idle beside one spinning, {IDLE_WINDOW_S:g} s window")
    idle = idle_pcpu_pct()
    out["idle_pcpu_cpu_pct"] = idle["idle"]
    out["busy_pcpu_cpu_pct"] = idle["busy"]
    out["idle_window_s"] = idle["window_s"]
    return out
