"""The machine process.

Life of a machine: compute the RAM layout, create machine RAM, format the
hypervisor region, build every domain, spawn one PCPU process per CPU (each
inherits the RAM descriptor), unlink the shm name, wait until every PCPU is
online, start them, then relay console output and domain ends until every domain
has ended. Whatever happens (normal end, Ctrl-C, SIGTERM, a PCPU dying, an
exception here) the PCPUs are halted or killed and reaped and RAM is released."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

import psutil
import zmq

from smpxen import __version__
from smpxen.domain import ctrl_channel
from smpxen.domain.builder import BuildError, DomainBuilder, DomainRequest
from smpxen.ipc import endpoints, messages as M
from smpxen.machine import spawn
from smpxen.machine.console import ConsoleMux
from smpxen.machine.controller import DomainController, TerminalInput
from smpxen.machine.images import KernelError, load_kernel
from smpxen.machine.report import build_report
from smpxen.shm.boot import assemble_trampoline, format_hypervisor_region
from smpxen.shm.domains import DomainTable
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM, OutOfSharedMemory
from smpxen.trace.area import format_area

EXIT_OK = 0
EXIT_DOMAIN_CRASHED = 1
EXIT_CONFIG = 2
EXIT_TIMEOUT = 3
EXIT_PCPU_FAILED = 4
ONLINE_TIMEOUT_S = 60.0
HALT_GRACE_S = 5.0


class MachineError(Exception):
    """A problem found before anything was started (bad kernel, too little memory)."""


@dataclass
class RunOptions:
    report: str | None = None
    timeout: float | None = None
    quiet: bool = False
    stream: object = None
    die_with_parent: bool = False
    probe_time_ms: float | None = None            # sample every PCPU's system time this often
    migrate: list = field(default_factory=list)   # [(domain name, period ms)]
    status_s: float = 0.0                          # a status line on stderr this often (0: never)
    console_input: bool = False                    # standard input goes to Domain-0's console
    trace: str | None = None                       # read the trace buffers into this file


@dataclass
class DomainRecord:
    domid: int
    name: str
    kernel: str
    memory_bytes: int
    pcpu: int
    privileged: bool
    cmdline: str
    bvt: dict = field(default_factory=dict)
    ended: dict | None = None
    stats: dict = field(default_factory=dict)
    ran_on: set = field(default_factory=set)
    destroyed: bool = False                 # by DOM0_DESTROYDOMAIN (smpxen/machine/control.py)
    console: list | None = None             # its console lines, kept when it was destroyed
    console_dropped: tuple = (0, 0)         # ... and the lines and bytes dropped


def _assign_cpus(cfg):
    """Fill in cpu="auto" with the least-loaded PCPU (ties: lowest index)."""
    load = [0] * cfg.cpus
    specs = cfg.all_domains
    for s in specs:
        if s.cpu is not None:
            load[s.cpu] += 1
    out = []
    for s in specs:
        if s.cpu is None:
            cpu = min(range(cfg.cpus), key=lambda i: (load[i], i))
            load[cpu] += 1
            s = replace(s, cpu=cpu)
        out.append(s)
    return out


class Machine:
    def __init__(self, cfg, options: RunOptions):
        self.cfg = cfg
        self.opts = options
        self.tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.procs: list[spawn.PcpuProcess] = []
        self.ram: MachineRAM | None = None
        self.zctx: zmq.Context | None = None
        self.inbox = None
        self.outboxes: list = []
        self.records: dict[int, DomainRecord] = {}
        self.past_records: list[DomainRecord] = []   # destroyed domains (their ids may be reused)
        self.control = None                          # the control plane (smpxen/machine/control.py)
        self.privcmd_l1: int | None = None           # the L1 mapping Domain-0's privcmd window
        self.layout: Layout | None = None
        self.pcpu_stats: dict[int, dict] = {}
        self.pcpu_pids: dict[int, int] = {}
        self.interrupted: int | None = None
        self.failure: str | None = None
        self.timings: dict[str, float] = {}
        self.drivers: list = []
        self.time_probe = None
        self.migrators: dict = {}
        self.controller: DomainController | None = None   # the domain controller (xend's part)
        self.stream = options.stream or sys.stdout
        self.trace_out = None                      # --trace: the file, then its collector
        self.collector = None
        self.trace_summary: dict | None = None

    # ---- preparation (nothing started yet) ------------------------------------------
    def _prepare_domains(self):
        specs = _assign_cpus(self.cfg)
        reqs = []
        next_id = 1
        for spec in specs:
            domid = 0 if spec.privileged else next_id
            if not spec.privileged:
                next_id += 1
            try:
                image = load_kernel(spec.kernel, spec.memory_bytes, spec.privileged)
            except KernelError as e:
                raise MachineError(f"{self.cfg.path}: domain {spec.name!r}: kernel: {e}") from None
            cmdline = spec.render_cmdline(domid)
            reqs.append(DomainRequest(domid, spec.name, image, spec.memory_bytes, spec.cpu,
                                      cmdline, spec.privileged))
            self.records[domid] = DomainRecord(domid, spec.name, str(spec.kernel), spec.memory_bytes,
                                               spec.cpu, spec.privileged, cmdline, dict(spec.bvt))
        return reqs

    # ---- run ---------------------------------------------------------------------
    def run(self) -> int:
        t0 = time.monotonic()
        reqs = self._prepare_domains()        # may raise MachineError before anything exists
        names = {r.name for r in self.records.values()}
        if self.opts.console_input and 0 not in self.records:
            raise MachineError("--input: the machine has no Domain-0 to send the input to")
        for name, _period in self.opts.migrate:
            if name not in names:
                raise MachineError(f"--migrate: no domain named {name!r} (domains: {', '.join(sorted(names))})")
        if self.opts.trace:
            try:
                self.trace_out = open(self.opts.trace, "wb")
            except OSError as e:
                raise MachineError(f"--trace {self.opts.trace}: {e.strerror or e}") from None
        old_handlers = self._install_signal_handlers()
        try:
            return self._run(reqs, t0)
        finally:
            self._teardown()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)

    def _run(self, reqs, t0) -> int:
        cfg = self.cfg
        layout = self.layout = Layout.compute(cfg.memory_bytes, cfg.cpus, trace_pages=cfg.trace_pages)
        try:
            self.ram = MachineRAM.create(cfg.memory_bytes)
        except OutOfSharedMemory as e:
            raise MachineError(f"{cfg.path}: machine.memory_mib: {e}") from None
        locks = Locks(self.ram.fd)
        frames = FrameTable(self.ram, layout, locks)
        domtable = DomainTable(self.ram, layout)
        format_hypervisor_region(self.ram, layout, frames)
        format_area(self.ram.mem, layout, frames.header, cfg.trace_mask)
        builder = DomainBuilder(self.ram, layout, frames, domtable)
        for req in reqs:
            try:
                builder.build(req)
            except BuildError as e:
                raise MachineError(str(e)) from None
        ctrl_channel.connect_all(self.ram, layout, locks, domtable, [r.domid for r in reqs])
        self.controller = DomainController(domtable, self._send_pcpu, self.ram)
        self.privcmd_l1 = builder.privcmd_l1.get(0)
        self.timings["build_s"] = time.monotonic() - t0

        # PCPUs are forks of this process: made before any ZeroMQ context or thread
        # exists here, with everything they run imported already (machine/spawn.py).
        spawn.preload()
        epoch_ns = time.monotonic_ns()
        self.epoch_ns = epoch_ns
        wallclock_ns = time.time_ns()      # the machine's RTC at the epoch
        probes = assemble_trampoline()[1]
        t_spawn = time.monotonic()
        for i in range(cfg.cpus):
            clock = cfg.clocks[i]
            boot = {"index": i, "nr_pcpus": cfg.cpus, "tag": self.tag, "fd": self.ram.fd,
                    "ram_bytes": cfg.memory_bytes, "epoch_ns": epoch_ns,
                    "machine_pid": os.getpid(), "console_io": cfg.console_io,
                    "time_model": cfg.time_model, "probes": probes, "wallclock_ns": wallclock_ns,
                    "trace_pages": cfg.trace_pages,
                    "clock": {"freq_hz": clock.freq_hz, "offset_cycles": clock.offset_cycles,
                              "drift_ppm": clock.drift_ppm}}
            self.procs.append(spawn.fork_pcpu(boot))
        self.ram.unlink()     # every PCPU holds the descriptor; nothing is left in /dev/shm
        self.zctx = zmq.Context(io_threads=1)
        self.inbox = endpoints.bind_inbox(self.zctx, endpoints.machine_endpoint(self.tag))
        self.console = ConsoleMux({d: r.name for d, r in self.records.items()},
                                  self.stream, self.opts.quiet)
        self.controller.attach(self.console, self.records)
        try:
            self._wait_online()
            self.timings["spawn_to_online_s"] = time.monotonic() - t_spawn
            # From the start of this process (interpreter start-up included) to all PCPUs online.
            self.timings["boot_s"] = time.time() - psutil.Process().create_time()
            self._start_pcpus()
            from smpxen.machine.control import ControlPlane
            self.control = ControlPlane(self)
            self._start_drivers(domtable)
            t_run = time.monotonic()
            status = self._supervise()
            self.timings["run_s"] = time.monotonic() - t_run
        except Interrupted as e:
            self._say(f"smpxen: {e} received, stopping the machine")
            status = 128 + e.signum
        except PcpuFailure as e:
            self._say(f"smpxen: {e}; stopping the machine")
            self.failure = str(e)
            status = EXIT_PCPU_FAILED
        self._halt_pcpus()
        if self.collector is not None:
            self.trace_summary = self.collector.finish()
        self.console.flush(held_too=True)
        self.timings["total_s"] = time.monotonic() - t0
        if self.opts.report:
            self._write_report(status)
        return status

    def _start_drivers(self, domtable) -> None:
        from smpxen.machine.experiments import Migrator, StatusLine, TimeProbe
        self.drivers = []
        if self.trace_out is not None:
            from smpxen.trace.collect import TraceCollector
            self.collector = TraceCollector(self.trace_out, self.ram.mem, self.ram.fd, self.opts.trace)
            self.drivers.append(self.collector)
        if self.opts.status_s > 0:
            self.drivers.append(StatusLine(self.opts.status_s, self.records, sys.stderr))
        if self.opts.console_input:
            self.drivers.append(TerminalInput(sys.stdin.fileno(), self.controller, sys.stderr))
        if self.opts.probe_time_ms:
            self.time_probe = TimeProbe(self.opts.probe_time_ms, self.cfg.cpus, self.epoch_ns)
            self.drivers.append(self.time_probe)
        by_name = {r.name: r.domid for r in self.records.values()}
        for name, period in self.opts.migrate:
            if name not in by_name:
                raise MachineError(f"--migrate: no domain named {name!r} (domains: {', '.join(by_name)})")
            m = Migrator(by_name[name], period, self.cfg.cpus, domtable)
            self.migrators[name] = m
            self.drivers.append(m)

    def _start_pcpus(self) -> None:
        cpus = self.cfg.cpus
        self.outboxes = [endpoints.connect_outbox(self.zctx, endpoints.pcpu_endpoint(self.tag, i))
                         for i in range(cpus)]
        per_cpu = {i: [] for i in range(cpus)}
        for rec in self.records.values():
            per_cpu[rec.pcpu].append(rec.domid)
        boot_log = [f"smpxen {__version__}: {cpus} PCPUs, {self.cfg.memory_bytes >> 20} MiB of RAM, "
                    f"time model {self.cfg.time_model}"] + \
            [f"domain {r.domid} ({r.name}) built: {r.kernel}, {r.memory_bytes >> 10} KiB, pcpu {r.pcpu}"
             for r in sorted(self.records.values(), key=lambda r: r.domid)]
        for i, sock in enumerate(self.outboxes):
            sock.send(M.encode(M.START, M.MACHINE, {
                "domains": per_cpu[i],
                "bvt": {d: self.records[d].bvt for d in per_cpu[i] if self.records[d].bvt},
                "printk": boot_log if i == 0 else []}))

    def _install_signal_handlers(self):
        def on_signal(signum, _frame):
            self.interrupted = signum
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
        return old

    def _recv(self, timeout_ms: int):
        ready = self.control.poll(timeout_ms) if self.control is not None else self.inbox.poll(timeout_ms)
        if ready:
            return M.decode(self.inbox.recv())
        return None

    def _check_children(self) -> None:
        for i, p in enumerate(self.procs):
            rc = p.poll()
            if rc is not None:
                how = f"killed by signal {-rc} ({signal.Signals(-rc).name})" if rc < 0 else f"exited with status {rc}"
                raise PcpuFailure(f"pcpu{i} (pid {p.pid}) {how}")

    def _wait_online(self) -> None:
        give_up = time.monotonic() + ONLINE_TIMEOUT_S
        while len(self.pcpu_pids) < self.cfg.cpus:
            if self.interrupted:
                raise Interrupted(self.interrupted)
            self._check_children()
            if time.monotonic() > give_up:
                raise PcpuFailure(f"only {len(self.pcpu_pids)} of {self.cfg.cpus} PCPUs came online "
                                  f"within {ONLINE_TIMEOUT_S:.0f}s")
            msg = self._recv(100)
            if msg and msg[0] == M.ONLINE:
                self.pcpu_pids[msg[1]] = msg[2]
            elif msg and msg[0] == M.FATAL:
                raise PcpuFailure(f"pcpu{msg[1]} failed: {msg[2].strip().splitlines()[-1]}")

    def _supervise(self) -> int:
        deadline = None if self.opts.timeout is None else time.monotonic() + self.opts.timeout
        while True:
            if all(r.ended for r in self.records.values()):
                crashed = [r for r in self.records.values() if r.ended["how"] == "crashed"]
                return EXIT_DOMAIN_CRASHED if crashed else EXIT_OK
            if self.interrupted:
                raise Interrupted(self.interrupted)
            if deadline is not None and time.monotonic() > deadline:
                running = ", ".join(f"d{r.domid} {r.name}" for r in self.records.values() if not r.ended)
                self._say(f"smpxen: timeout after {self.opts.timeout:g}s; still running: {running}")
                return EXIT_TIMEOUT
            self._check_children()
            wait_ms = 100
            if self.drivers:
                soonest = min(d.due() for d in self.drivers)
                now = time.monotonic()
                if soonest <= now:
                    for d in self.drivers:
                        if d.due() <= now:
                            d.fire(self.outboxes)
                    soonest = min(d.due() for d in self.drivers)
                wait_ms = max(0, min(100, int((soonest - now) * 1000)))
            msg = self._recv(wait_ms)
            while msg is not None:
                self._handle(msg)
                msg = self._recv(0)

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind in (M.CONSOLE, M.CONSOLE_DROPPED):
            self.console.arrived(kind == M.CONSOLE_DROPPED, *msg[2:])
        elif kind == M.DOMAIN_ENDED:
            _, pcpu, domid, how, code, detail = msg
            rec = self.records.get(domid)
            if rec is None:
                return
            rec.ended = {"how": how, "code": code, "detail": detail, "pcpu": pcpu}
            self.controller.domain_ended(domid, how)
            if how == "crashed":
                self.console.flush()
                self._say(f"smpxen: domain {domid} ({rec.name}) crashed on pcpu{pcpu}: {detail}")
        elif kind == M.PLATFORM_TIME_REQ:
            # The machine is the platform timer: answer with its clock as fast as we can.
            now = time.monotonic_ns() - self.epoch_ns
            self.outboxes[msg[1]].send(M.encode(M.PLATFORM_TIME, M.MACHINE, msg[2], now))
        elif kind == M.TIME_SAMPLE:
            if self.time_probe is not None:
                self.time_probe.sample(msg[1], msg[2], msg[3], msg[4])
        elif kind == M.PRIVCMD_REPLY:
            if self.control is not None:
                self.control.endpoint.privcmd_reply(msg)
        elif kind == M.DOMAIN_CREATED:
            if self.control is not None:
                self.control.created(*msg[1:])
        elif kind == M.DOMAIN_DESTROYED:
            if self.control is not None:
                self.control.destroyed(*msg[1:])
        elif kind == M.MIGRATE_FAILED:
            pass   # the domain ended or moved meanwhile; the next period tries again
        elif kind == M.CTRL_RESPONSE:
            self.controller.on_response(msg[2], msg[3], msg[4], msg[5], msg[6])
        elif kind == M.STATS:
            self.pcpu_stats[msg[1]] = msg[2]
        elif kind == M.FATAL:
            raise PcpuFailure(f"pcpu{msg[1]} failed:\n{msg[2]}")

    def _send_pcpu(self, cpu: int, *parts) -> None:
        self.outboxes[cpu].send(M.encode(*parts))

    def _halt_pcpus(self) -> None:
        """Ask every live PCPU to stop and report; kill whatever does not exit in time."""
        self._close_control()
        for i, p in enumerate(self.procs):
            if p.poll() is None and i < len(self.outboxes):
                self.outboxes[i].send(M.encode(M.HALT, M.MACHINE))
        give_up = time.monotonic() + HALT_GRACE_S
        while time.monotonic() < give_up:
            if all(p.poll() is not None for p in self.procs) and \
                    len(self.pcpu_stats) >= sum(1 for p in self.procs if p.returncode == 0):
                break
            msg = self._recv(20)
            while msg is not None:
                if msg[0] in (M.STATS, M.CONSOLE, M.CONSOLE_DROPPED, M.DOMAIN_ENDED, M.PLATFORM_TIME_REQ,
                              M.DOMAIN_DESTROYED):
                    self._handle(msg)
                msg = self._recv(0)

    def _close_control(self) -> None:
        """Stop the control endpoint (its waiting clients are told) before the PCPUs go."""
        if self.control is not None:
            self.control.close()

    def _teardown(self) -> None:
        if self.trace_out is not None:
            self.trace_out.close()          # already closed after a normal run
        self._close_control()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.zctx is not None:
            self.zctx.destroy(linger=0)
        if self.ram is not None:
            self.ram.close()

    def _say(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    # ---- report (smpxen/machine/report.py) -------------------------------------------
    def report(self, status: int) -> dict:
        return build_report(self, status)

    def _write_report(self, status: int) -> None:
        with open(self.opts.report, "w") as f:
            json.dump(self.report(status), f, indent=2)
            f.write("\n")


class PcpuFailure(Exception):
    pass


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
