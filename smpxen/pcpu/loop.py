"""The PCPU process's main loop: run the current domain in slices, handle what
stopped each slice (a hypercall that reschedules, a trap, an IPI, the slice
deadline), and talk to the machine and the other PCPUs over ZeroMQ."""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
import traceback

import psutil
import zmq
from unicorn import UC_ERR_INSN_INVALID

from smpxen.hv.table import do_hypercall
from smpxen.hv.guestmem import GuestMemory
from smpxen.ipc import endpoints, messages as M
from smpxen.pcpu.bounce import BounceError, GuestTraps
from smpxen.pcpu.core import HYPERCALL_ARG_REGS, CpuCore, UcError
from smpxen.pcpu.events import EventDelivery, event_pending
from smpxen.pcpu import domctl, migration
from smpxen.pcpu.hvctx import HvContext
from smpxen.pcpu.mmu import PcpuMM, remote_mm_flush, remote_mm_revoke
from smpxen.pcpu.clock import PcpuClock
from smpxen.pcpu.vcpu import Vcpu
from smpxen.pcpu.watcher import Watcher
from smpxen.arch import x86
from smpxen.sched.bvt import (MCU_ADVANCE, SCHED_INFO_PUT, WARPL_DEFAULT_MS, WARPU_DEFAULT_MS,
                               BVTAdjdom)
from smpxen.sched.core import SchedCore
from smpxen.shm.domains import DS_CRASHED, DS_SHUTDOWN, DomainTable
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from smpxen.xen import arch_x86_32 as A
from smpxen.xen.hypercall import HYPERCALL_VECTOR, NR_HYPERCALLS, name as hypercall_name
from smpxen.xen.structs import SharedInfo
from smpxen.xen.xen import SHUTDOWN_NAMES, VIRQ_DOM_EXC, VIRQ_TIMER

EXIT_RESCHED = "resched"
EXIT_PREEMPTED = "preempted"     # a long hypercall made a continuation: serve, then resume
PING_COUNT = 32
INITIAL_EFLAGS = x86.EFLAGS_IF | x86.EFLAGS_RESERVED1
# A wait on another process has no deadline: with many PCPU processes on few host
# cores a peer can be off the CPU for seconds, and a PCPU that really died is the
# machine's to notice (it then halts everyone, which ends the wait). A long wait is
# only reported, every WAIT_NOTE_S seconds.
WAIT_NOTE_S = 10.0
TRACEBACK_FRAMES = 4


class MachineHalting(BaseException):
    """The machine told this PCPU to halt while it waited for a peer. A BaseException
    so it unwinds a hypercall past the containment that catches Exception."""


class RemoteCallFailed(Exception):
    """The function another PCPU ran for us raised (its message is the reason)."""


def error_detail(what: str, exc: BaseException) -> str:
    """One line saying what failed, then the innermost frames of the traceback."""
    frames = traceback.format_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    return f"hypervisor error in {what}: {type(exc).__name__}: {exc}\n" + "".join(frames).rstrip()


class Pcpu:
    EXIT_RESCHED = EXIT_RESCHED

    def __init__(self, boot: dict):
        self.index = boot["index"]
        self.nr_pcpus = boot["nr_pcpus"]
        self.tag = boot["tag"]
        self.epoch_ns = boot["epoch_ns"]
        self.console_io_for_all = boot["console_io"] == "all"
        self.ram = MachineRAM.attach(boot["fd"], boot["ram_bytes"])
        self.layout = Layout.compute(boot["ram_bytes"], self.nr_pcpus)
        self.locks = Locks(self.ram.fd)
        self.frames = FrameTable(self.ram, self.layout, self.locks)
        self.domains = DomainTable(self.ram, self.layout)
        self.core = CpuCore(self.ram, self.layout, self.index, boot["probes"])
        self.instr_rate = self.core.measure_rate()
        self.core.on_interrupt = self._on_interrupt
        self.clock = PcpuClock(self, boot)
        self.core.on_rdtsc = self.clock.read_tsc
        self.mem = GuestMemory(self.ram, self.layout.nr_frames)
        self.mmu = PcpuMM(self)
        self.mem.reconnect = self.mmu.reconnect
        self.hv = HvContext(self)
        self.traps = GuestTraps(self)        # bouncing faults and interrupts (pcpu/bounce.py)
        self.events = EventDelivery(self)    # event channels, VIRQs, upcalls (pcpu/events.py)
        self.sched: SchedCore | None = None     # created once time is running
        self.vcpus: dict[int, Vcpu] = {}
        self.current: Vcpu | None = None
        self.resume_eip = 0
        self._hypercall_nr = None               # the hypercall the hook is running, if any
        self.exit = None
        self.halted = False
        self.started = False

        self.zctx = zmq.Context(io_threads=1)
        inbox = endpoints.bind_inbox(self.zctx, endpoints.pcpu_endpoint(self.tag, self.index))
        self.to_machine = endpoints.connect_outbox(self.zctx, endpoints.machine_endpoint(self.tag))
        self.peers: dict[int, zmq.Socket] = {}
        self.watcher = Watcher(inbox, self.core.stop)
        self.watcher.immediate[M.IPI_TSC_SYNC] = self.clock.zero_tsc

        self.counts = {"hypercalls": 0, "slices": 0, "switches": 0, "traps": 0,
                       "ipis_sent": {}, "ipis_received": {}}
        self.emulated_s = 0.0
        self.ipi_rtt_us: list[float] = []
        self._call_seq = 0
        self._replies: dict[int, object] = {}
        self._failures: dict[int, str] = {}      # seq -> why the remote call raised
        self._ended_cpu_time: dict[int, int] = {}
        self.migrated_out: dict[int, int] = {}
        self.pending_migrations: list = []      # (domid, target), done between slices
        self._early: list = []                  # messages that arrived before the scheduler

    # ---- time (smpxen.pcpu.clock) ---------------------------------------------------
    def read_tsc(self) -> int:
        return self.clock.read_tsc()

    def now(self) -> int:
        """System time in ns (Xen's NOW()) under the configured time model."""
        return self.clock.now()

    def run_timers(self) -> None:
        for key in self.clock.due():
            if key == "tick":            # Xen's t_timer: time update + VIRQ_TIMER to the runner
                if self.current is not None and self.sched.runnable(self.current.domid):
                    self.update_dom_time(self.current)
                    self.send_virq(self.current, VIRQ_TIMER)
            elif key == "fallback":      # time update only
                if self.current is not None:
                    self.update_dom_time(self.current)
            else:                        # ("domain", domid): its set_timer_op timer
                v = self.vcpus.get(key[1])
                if v is not None and not v.ended:
                    self.update_dom_time(v)
                    self.send_virq(v, VIRQ_TIMER)

    def update_dom_time(self, vcpu: Vcpu) -> None:
        """Publish the time fields in the domain's shared_info, bracketed by the two
        version counters (Xen's update_dom_time). Only this PCPU writes them: it owns
        the domain, and the domain is not running while we do it."""
        f = self.clock.timebase.shared_fields()
        s = vcpu.shared
        s.time_version1 = (s.time_version1 + 1) & 0xFFFFFFFF
        s.cpu_freq = f.cpu_freq
        s.tsc_timestamp = f.tsc_timestamp
        s.system_time = f.system_time + vcpu.time_offset
        s.wc_sec = f.wc_sec
        s.wc_usec = f.wc_usec
        s.domain_time = self.sched.cpu_time(vcpu.domid, self.now())
        s.time_version2 = (s.time_version2 + 1) & 0xFFFFFFFF

    def send_virq(self, vcpu: Vcpu, virq: int) -> None:
        """Raise a virtual interrupt for a domain (smpxen.pcpu.events.send_virq)."""
        self.events.send_virq(vcpu.domid, virq)

    # ---- messaging ---------------------------------------------------------------
    def send_machine(self, *parts) -> None:
        self.to_machine.send(M.encode(*parts))

    def console_write(self, v: Vcpu, data: bytes) -> None:
        admit, dropped = v.console.admit(len(data), time.monotonic())
        if dropped:
            self.send_machine(M.CONSOLE_DROPPED, self.index, v.domid, dropped)
        if admit:
            self.send_machine(M.CONSOLE, self.index, v.domid, data)

    def send_ipi(self, target: int, kind: str, *payload) -> None:
        self._peer(target).send(M.encode(kind, self.index, *payload))
        sent = self.counts["ipis_sent"]
        sent[kind] = sent.get(kind, 0) + 1

    def _peer(self, target: int):
        sock = self.peers.get(target)
        if sock is None:
            sock = self.peers[target] = endpoints.connect_outbox(
                self.zctx, endpoints.pcpu_endpoint(self.tag, target))
        return sock

    def call_remote(self, target: int, function: str, args=()):
        """Run `function` on PCPU `target` and wait for its result, serving our own
        inbox meanwhile (the target may be calling us at the same time). Raises
        RemoteCallFailed if the function raised there."""
        seq = self.next_seq()
        self.send_ipi(target, M.IPI_CALL, seq, function, list(args))
        return self.wait_reply(seq, f"pcpu{target} ({function})")

    def next_seq(self) -> int:
        self._call_seq += 1
        return self._call_seq

    def wait_reply(self, seq: int, what: str):
        self.serve_until(lambda: seq in self._replies or seq in self._failures, f"an answer from {what}")
        if seq in self._failures:
            raise RemoteCallFailed(f"{what}: {self._failures.pop(seq)}")
        return self._replies.pop(seq)

    def serve_until(self, condition, what: str) -> None:
        """Handle incoming messages until condition() holds (others may be waiting on
        us at the same time, so we keep serving them). No deadline (WAIT_NOTE_S);
        a HALT from the machine ends the wait with MachineHalting."""
        started = time.monotonic()
        note_at = started + WAIT_NOTE_S
        while not condition():
            if self.halted:
                raise MachineHalting(what)
            if not self.watcher.queue:
                self.watcher.wake.wait(0.05)
            self.watcher.wake.clear()
            self.handle_messages()
            now = time.monotonic()
            if now >= note_at:
                sys.stderr.write(f"smpxen pcpu{self.index}: still waiting for {what} "
                                 f"after {now - started:.0f} s\n")
                note_at = now + WAIT_NOTE_S

    def call_remote_many(self, targets, function: str, args=()) -> list:
        """Run `function` on several PCPUs at once: send every request first, then
        wait for all the replies (a multicast IPI, e.g. a TLB shootdown)."""
        seqs = []
        for target in targets:
            seqs.append(self.next_seq())
            self.send_ipi(target, M.IPI_CALL, seqs[-1], function, list(args))
        return [self.wait_reply(seq, f"pcpu{t} ({function})") for seq, t in zip(seqs, targets)]

    REMOTE_FUNCTIONS = {"ping": lambda self: None, "mm_flush": remote_mm_flush,
                        "mm_revoke": remote_mm_revoke}

    # Messages that need this PCPU's scheduler wait until its time and scheduler run.
    NEEDS_SCHEDULER = frozenset({M.IPI_EVTCHN_SET, M.IPI_MIGRATE})
    # Messages about one domain: an error while acting on one crashes that domain.
    DOMAIN_OF = {M.IPI_EVTCHN_SET: lambda msg: msg[2], M.IPI_MIGRATE: lambda msg: msg[2]["domid"]}

    def handle_messages(self) -> None:
        queue = self.watcher.queue
        if self.sched is not None and self._early:
            queue.extendleft(reversed(self._early))
            self._early = []
        while queue:
            msg = queue.popleft()
            kind = msg[0]
            if self.sched is None and kind in self.NEEDS_SCHEDULER:
                self._early.append(msg)
                continue
            if kind in M.IPI_KINDS:
                got = self.counts["ipis_received"]
                got[kind] = got.get(kind, 0) + 1
            try:
                self._handle_message(msg)
            except Exception as e:       # MachineHalting is not caught: it ends the PCPU
                self._message_failed(msg, e)

    def _message_failed(self, msg, exc: Exception) -> None:
        """Contain an error met while acting on a message: a remote call answers with
        the reason (the caller's hypercall then fails), a message about one of our
        domains crashes that domain; anything else is this PCPU's own bug."""
        kind = msg[0]
        if kind == M.IPI_CALL:
            if msg[2]:
                self.send_ipi(msg[1], M.IPI_FAILED, msg[2], f"{type(exc).__name__}: {exc}")
            return
        domain_of = self.DOMAIN_OF.get(kind)
        v = self.vcpus.get(domain_of(msg)) if domain_of else None
        if v is None:
            raise exc
        self.end_domain(v, "crashed", -1, error_detail(f"message {kind}", exc))

    def _handle_message(self, msg) -> None:
        kind, src = msg[0], msg[1]
        if kind == M.IPI_CALL:
            seq, function, args = msg[2], msg[3], msg[4]
            fn = self.REMOTE_FUNCTIONS.get(function) or domctl.REMOTE[function]
            result = fn(self, *args)
            if seq:                    # seq 0: the caller does not wait for a result
                self.send_ipi(src, M.IPI_REPLY, seq, result)
        elif kind == M.IPI_REPLY or kind == M.PLATFORM_TIME:
            self._replies[msg[2]] = msg[3]
        elif kind == M.IPI_FAILED:
            self._failures[msg[2]] = msg[3]
        elif kind == M.IPI_TSC_SYNC:
            self.clock.tsc_synced = True     # zeroed on arrival (watcher thread)
        elif kind == M.IPI_EVTCHN_SET:
            self.events.on_ipi(msg[2], msg[3])
        elif kind == M.IPI_EVENT_CHECK:
            pass   # waking up was the point
        elif kind == M.IPI_MIGRATE:
            migration.migrate_in(self, msg[2])
        elif kind == M.MIGRATE:
            self.pending_migrations.append((msg[2], msg[3]))
        elif kind == M.TIME_PROBE:
            if self.sched is not None:          # only once time is running
                self.send_machine(M.TIME_SAMPLE, self.index, msg[2], self.clock.timebase.raw_now(),
                                  time.monotonic_ns())
        elif kind == M.START:
            self._start(msg[2])
        elif kind == M.HALT:
            self.halted = True
        else:
            raise RuntimeError(f"unexpected message {kind!r} from {src}")

    # ---- domains ---------------------------------------------------------------
    def _start(self, spec: dict) -> None:
        for cpu in range(self.nr_pcpus):
            if cpu != self.index:      # connect now: a first send would pay the handshake
                self._peer(cpu)
        self.clock.start()
        now = self.now()
        self.sched = SchedCore(cpu=self.index, now=now)
        for domid in spec["domains"]:
            info = self.domains.find(domid)
            shared = SharedInfo.from_buffer(self.ram.mem, info.shared_info_mfn << 12)
            self.vcpus[domid] = Vcpu(domid, info, shared)
            self.sched.add_domain(domid, now, paused=True)
            params = spec.get("bvt", {}).get(domid)
            if params:
                rc = self.sched.adjdom(domid, SCHED_INFO_PUT, BVTAdjdom(
                    mcu_adv=params.get("mcu_advance", MCU_ADVANCE),
                    warpback=params.get("warpback", 0), warpvalue=params.get("warp_value", 0),
                    warpl=params.get("warpl_ms", WARPL_DEFAULT_MS),
                    warpu=params.get("warpu_ms", WARPU_DEFAULT_MS)))
                if rc:
                    raise ValueError(f"BVT parameters {params} for domain {domid}: error {rc}")
            self.sched.ctrl_unpause(domid, now)
        self.started = True
        if self.nr_pcpus > 1 and spec.get("measure_ipi", True):
            peer = (self.index + 1) % self.nr_pcpus
            for _ in range(PING_COUNT):
                t = time.perf_counter_ns()
                self.call_remote(peer, "ping")
                self.ipi_rtt_us.append((time.perf_counter_ns() - t) / 1000)

    def yield_current(self) -> None:
        self.sched.yield_(self.current.domid, self.now())
        self.exit = EXIT_RESCHED

    def block_current(self) -> None:
        self.sched.block(self.current.domid, self.now())
        self.exit = EXIT_RESCHED

    def preempt_pending(self) -> bool:
        """Xen's hypercall_preempt_check(): this PCPU has other work due (a message, a
        timer, the end of the slice), so a long hypercall should stop here."""
        w = self.watcher
        return bool(w.queue) or (w.deadline_ns is not None and time.monotonic_ns() >= w.deadline_ns)

    def restart_hypercall(self, args) -> None:
        """Xen's hypercall_create_continuation for a hypercall made by the guest
        itself: its argument registers get `args` and EIP goes back to the
        `int $0x82` (2 bytes), so the guest makes the call again, with what is left,
        when it next runs; the slice ends here so the PCPU serves what is due."""
        core = self.core
        for reg, value in zip(HYPERCALL_ARG_REGS, args):
            core.write_reg(reg, value)
        core.set_eip(core.eip() - 2)
        self.exit = EXIT_PREEMPTED

    def end_domain(self, vcpu: Vcpu, how: str, code: int, detail: str) -> None:
        if vcpu.ended:
            return
        vcpu.ended = how
        vcpu.detail = detail
        dropped = vcpu.console.take_dropped()
        if dropped:
            self.send_machine(M.CONSOLE_DROPPED, self.index, vcpu.domid, dropped)
        now = self.now()
        if how == "shutdown":
            vcpu.info.state = DS_SHUTDOWN
            vcpu.info.shutdown_code = code
            self.sched.mark_shutdown(vcpu.domid, now)
            detail = detail or SHUTDOWN_NAMES.get(code, f"reason {code}")
        else:
            vcpu.info.state = DS_CRASHED
            self.sched.mark_crashed(vcpu.domid, now)
        self.send_machine(M.DOMAIN_ENDED, self.index, vcpu.domid, how, code, detail)
        if vcpu.domid != 0:      # Xen's domain_shutdown/domain_crash tell Domain-0
            self.events.send_virq(0, VIRQ_DOM_EXC)
        if vcpu is self.current:
            self.exit = EXIT_RESCHED

    def _switch_to(self, nxt: Vcpu | None) -> None:
        prev = self.current
        if prev is not None and not prev.ended:
            self.mmu.deschedule()           # Xen flushes writable page tables on the way out
        if prev is not None and not prev.ended:
            # The loop's resume point is authoritative (a fresh entry or a bounce may not
            # have run yet, and emu_start only sets EIP when it starts).
            self.core.set_eip(self.resume_eip)
            prev.context = self.core.save()
        self.current = nxt
        self.counts["switches"] += 1
        if nxt is None:
            return
        nxt.pcpus_ran.add(self.index)
        self.update_dom_time(nxt)           # Xen stamps time on every schedule-in
        if nxt.context is None:
            info = nxt.info
            ds = A.FLAT_RING1_DS
            self.resume_eip = self.core.enter(info.pt_base_mfn << 12, dict(
                eip=info.entry_eip, cs=A.FLAT_RING1_CS, eflags=INITIAL_EFLAGS,
                esp=info.entry_esp, ss=ds, ds=ds, es=ds, fs=ds, gs=ds,
                esi=info.start_info_va))
        else:
            self.resume_eip = self.core.restore(nxt.context)
            nxt.context = None
        self.mem.cr3 = self.core.cr3()
        self.mmu.switched()

    def next_deadline(self) -> int | None:
        """Earliest system-time deadline: the scheduler's or a timer's."""
        cands = [t for t in (self.sched.next_deadline(), self.clock.timers.next_deadline()) if t is not None]
        return min(cands) if cands else None

    def reschedule(self) -> None:
        now = self.now()
        prev = self.current
        nxt_id, _deadline = self.sched.schedule(now, self.event_pending)
        nxt = self.vcpus.get(nxt_id) if nxt_id is not None else None
        if nxt is not prev:
            self._switch_to(nxt)
        for v in [v for v in self.vcpus.values() if v.ended and v is not self.current]:
            if self.sched.has_domain(v.domid):
                self._ended_cpu_time[v.domid] = self.sched.cpu_time(v.domid)
                self.sched.remove_domain(v.domid)
        self.mirror_domain_state()

    def mirror_domain_state(self) -> None:
        """Copy each hosted domain's scheduler flags and CPU time into the shared
        domain table, where DOM0_GETDOMAININFO on any PCPU reads them."""
        sched, now = self.sched, self.now()
        for domid, v in self.vcpus.items():
            if sched.has_domain(domid):
                v.info.flags = sched.flags(domid)
                v.info.cpu_time_ns = sched.cpu_time(domid, now)

    def request_resched(self) -> None:
        """Leave the running slice and reschedule (safe inside the hook)."""
        self.exit = EXIT_RESCHED
        self.core.stop()

    def do_pending_migrations(self) -> None:
        while self.pending_migrations:
            domid, target = self.pending_migrations.pop(0)
            if not migration.migrate_out(self, domid, target):
                self.send_machine(M.MIGRATE_FAILED, self.index, domid, target)

    def event_pending(self, domid: int) -> bool:
        return event_pending(self.vcpus[domid].shared)

    # ---- the hook ------------------------------------------------------------------
    def _on_interrupt(self, vector: int) -> None:
        """The hook. An error in hypervisor code run for the guest (a hypercall, the
        fast trap) crashes that domain, as Xen's domain_crash; the PCPU goes on."""
        try:
            self._interrupt(vector)
        except Exception as e:
            what = (f"hypercall {hypercall_name(self._hypercall_nr)}" if self._hypercall_nr is not None
                    else f"interrupt {vector:#x}")
            if self._hypercall_nr is not None:      # no result, but the histogram still sums to hypercalls
                res = self.current.hypercall_results
                res["hypervisor_error"] = res.get("hypervisor_error", 0) + 1
            self.end_domain(self.current, "crashed", -1, error_detail(what, e))
            self.core.stop()

    def _interrupt(self, vector: int) -> None:
        core = self.core
        cpl = core.cpl()
        self._hypercall_nr = None
        if vector == HYPERCALL_VECTOR and cpl == 1:
            args = core.hypercall_args()
            nr = self._hypercall_nr = args[0] & (NR_HYPERCALLS - 1)
            self.counts["hypercalls"] += 1
            v = self.current
            v.hypercalls += 1
            v.hypercalls_by_nr[nr] += 1
            rc = do_hypercall(self.hv, *args)
            core.set_result(rc)
            # The result histogram, with int keys (named at report time): errnos and 0
            # as themselves, any positive value as 1.
            key = rc if rc <= 0 else 1
            if self.exit is not None:
                if self.exit == EXIT_PREEMPTED:
                    key = "continuation"
                v.hypercall_results[key] = v.hypercall_results.get(key, 0) + 1
                core.stop()
                return
            v.hypercall_results[key] = v.hypercall_results.get(key, 0) + 1
            # test_all_events on the way back to the guest: run_slice bounces to the
            # event callback.
            if event_pending(self.current.shared):
                core.stop()
            return
        v = self.current
        if v.thread.fast_trap == vector and self.traps.fast_trap(v, vector, core.eip(), cpl):
            return    # direct system call: delivered without leaving the slice
        self.exit = ("trap", vector, core.eip(), cpl)
        core.stop()

    def _for_domain(self, v: Vcpu, what: str, fn, *args) -> None:
        """Run hypervisor code on behalf of domain v: an error in it crashes v (with
        the reason and where), not the PCPU."""
        try:
            fn(*args)
        except Exception as e:
            self.end_domain(v, "crashed", -1, error_detail(what, e))

    def _upcall(self) -> None:
        """Deliver a pending upcall to the current domain over its context at the
        resume point (between slices)."""
        v = self.current
        try:
            start = self.events.deliver_upcall(v, self.traps.context(self.resume_eip))
        except BounceError as e:
            self.end_domain(v, "crashed", -1, f"event upcall: {e}")
            return
        if start is not None:
            self.resume_eip = start

    def _handle_trap(self, vector: int, eip: int, cpl: int) -> None:
        """A fault or `int n` the hook did not consume: the memory code sees page
        faults first; everything else is bounced to the guest's handler, and a
        domain that cannot take it crashes."""
        self.counts["traps"] += 1
        v = self.current
        trap = self.traps.classify(vector, eip, cpl)     # consumes the fault state
        if vector == x86.PF and not trap.soft:
            if self.mm_page_fault(trap.cr2, trap.error_code, eip):
                self.resume_eip = eip
                return
            trap.cr2 = self.mmu.guest_cr2(trap.cr2)     # an LDT shadow fault: the guest's address
        try:
            self.resume_eip = self.traps.deliver(v, trap)
        except BounceError as e:
            self.end_domain(v, "crashed", vector, str(e))

    def mm_page_fault(self, addr: int, error_code: int, eip: int) -> bool:
        """First look at a guest page fault for the memory code (e.g. Xen's
        writable-page-table fixups). True = resolved: the instruction is retried;
        False = bounce it to the guest's #PF handler."""
        return self.mmu.page_fault(addr, error_code, self.core.cpl())

    # ---- main loop ------------------------------------------------------------------
    def run_slice(self) -> None:
        v = self.current
        w = self.watcher
        self.exit = None
        w.deadline_ns = self.clock.host_deadline(self.next_deadline())
        if event_pending(v.shared) and self.core.cpl() != 0:
            self._for_domain(v, "event upcall", self._upcall)     # test_all_events
            if v.ended:
                return
        w.running = True
        if w.queue:
            w.running = False
            return
        t = time.perf_counter()
        try:
            self.core.run(self.resume_eip)
        except UcError as e:
            if e.errno == UC_ERR_INSN_INVALID:
                # QEMU's #UD ends emu_start (EIP at the instruction) instead of reaching
                # the hook; Xen's do_invalid_op bounces it to the guest like any fault.
                self.exit = ("trap", x86.UD, self.core.eip(), self.core.cpl())
            else:
                self.exit = ("error", str(e))
        finally:
            w.running = False
        self.emulated_s += time.perf_counter() - t
        self.counts["slices"] += 1
        v.slices += 1
        self.resume_eip = self.core.eip()
        ex = self.exit
        if ex is None or ex == EXIT_RESCHED or ex == EXIT_PREEMPTED:
            return
        if ex[0] == "trap":
            self._for_domain(v, f"trap {ex[1]:#x}", self._handle_trap, *ex[1:])
        elif ex[0] == "error":
            self.end_domain(v, "crashed", -1, f"emulation error at eip {self.resume_eip:#010x}: {ex[1]}")

    def serve(self) -> None:
        self.watcher.start()
        self.send_machine(M.ONLINE, self.index, os.getpid())
        try:
            self._serve()
        except MachineHalting:
            pass                # halted while waiting for a peer: report and stop
        self.send_machine(M.STATS, self.index, self.stats())

    def _serve(self) -> None:
        w = self.watcher
        while not self.halted:
            self.handle_messages()
            if self.halted:
                break
            if not self.started:
                w.wake.wait(0.05)
                w.wake.clear()
                continue
            if self.sched.need_resched:     # e.g. the domain just blocked: off the CPU first
                self.reschedule()
            self.run_timers()
            if self.pending_migrations:
                self.do_pending_migrations()
            if self.sched.poll(self.now()):
                self.reschedule()
            if self.current is None:
                host = self.clock.host_deadline(self.next_deadline())
                timeout = 0.05 if host is None else max(0.0, min(0.05, (host - time.monotonic_ns()) / 1e9))
                if not w.queue:
                    w.wake.wait(timeout)
                w.wake.clear()
                continue
            self.run_slice()

    def stats(self) -> dict:
        proc = psutil.Process()
        cpu = proc.cpu_times()
        rtt = sorted(self.ipi_rtt_us)
        return {
            "index": self.index,
            "pid": os.getpid(),
            "hypercalls": self.counts["hypercalls"],
            "traps": self.counts["traps"],
            "slices": self.counts["slices"],
            "domain_switches": self.counts["switches"],
            "mm": self.mmu.stats(),
            "events": dict(self.events.counts),
            "ipis_sent": self.counts["ipis_sent"],
            "ipis_received": self.counts["ipis_received"],
            "ipi_rtt_us": {"samples": len(rtt), "median": statistics.median(rtt) if rtt else None,
                           "p99": rtt[min(len(rtt) - 1, int(len(rtt) * 0.99))] if rtt else None,
                           "min": rtt[0] if rtt else None, "max": rtt[-1] if rtt else None},
            "emulated_s": round(self.emulated_s, 6),
            "guest_instructions": None,
            "guest_instructions_estimate": int(self.emulated_s * self.instr_rate),
            "guest_instructions_estimate_method":
                "emulated seconds x this core's measured ALU-loop rate (an upper bound)",
            "alu_loop_rate_mips": round(self.instr_rate / 1e6, 1),
            "time": self.clock.describe(),
            "host_cpu_s": round(cpu.user + cpu.system, 3),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_bytes": proc.memory_info().rss,
            "domains": {d: {"hypercalls": v.hypercalls, "slices": v.slices,
                            "cpu_time_ns": self._cpu_time(d), "pcpus_ran": sorted(v.pcpus_ran),
                            **v.hypercall_stats()}
                        for d, v in self.vcpus.items()},
        }

    def _cpu_time(self, domid: int) -> int:
        if self.sched is None or not self.sched.has_domain(domid):
            return self._ended_cpu_time.get(domid, 0)
        return self.sched.cpu_time(domid, self.now())

    def close(self) -> None:
        self.watcher.close()
        self.zctx.destroy(linger=1000)
