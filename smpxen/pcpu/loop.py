"""The PCPU process's main loop: run the current domain in slices and handle what
stopped each slice (a hypercall that reschedules, a trap, a message, the slice
deadline). The hook (`_on_interrupt`) is where every hypercall and fault of the
guest arrives; hypercalls go to smpxen/hv/table.py with this PCPU's HvContext.

The Pcpu object wires its collaborators once, at construction, and holds the
state they share (the hosted domains, the running one, the resume point):

    mailbox   messages, IPIs, remote calls       smpxen/pcpu/mailbox.py
    clock     cycle counter, system time, timers smpxen/pcpu/clock.py
    paging    this CPU's side of memory          smpxen/pcpu/paging.py
    events    event channels, VIRQs, upcalls     smpxen/pcpu/events.py
    ctrl_if   the controller's end of the rings  smpxen/pcpu/ctrl_if.py
    traps     bouncing faults to the guest       smpxen/pcpu/bounce.py
    hv        what hypercall handlers see        smpxen/pcpu/hvctx.py
    sched     BVT on this PCPU                   smpxen/sched/core.py

and what they do to domains lives in smpxen/pcpu/schedule.py (switching, timers)
and smpxen/pcpu/lifecycle.py (start of day, a domain's end, moves)."""
from __future__ import annotations

import os
import time

from unicorn import UC_ERR_INSN_INVALID

from smpxen.arch import x86
from smpxen.hv.guestmem import GuestMemory
from smpxen.hv.table import do_hypercall
from smpxen.ipc import messages as M
from smpxen.pcpu import domain, lifecycle, schedule
from smpxen.pcpu.bounce import BounceError, GuestTraps
from smpxen.pcpu.clock import PcpuClock
from smpxen.pcpu.console import ConsoleOut
from smpxen.pcpu.containment import MachineHalting, error_detail
from smpxen.pcpu.ctrl_if import CtrlIf
from smpxen.pcpu.core import HYPERCALL_ARG_REGS, CpuCore, UcError
from smpxen.pcpu.events import EventDelivery, event_pending
from smpxen.pcpu.hvctx import HvContext
from smpxen.pcpu.mailbox import Mailbox
from smpxen.pcpu.msr import MsrFile
from smpxen.pcpu.paging import Paging
from smpxen.pcpu.printk import PrintkRing
from smpxen.pcpu.privcmd import Privcmd
from smpxen.pcpu.schedule import EXIT_RESCHED
from smpxen.pcpu.stats import pcpu_stats
from smpxen.pcpu.trace import PcpuTrace
from smpxen.pcpu.vcpu import Vcpu
from smpxen.sched.core import SchedCore
from smpxen.shm.domains import DomainTable
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from smpxen.xen.hypercall import HYPERCALL_VECTOR, NR_HYPERCALLS, name as hypercall_name
from smpxen.xen.trace import TRC_HCALL_ENTRY, TRC_HCALL_EXIT, TRC_SCHED_S_TIMER_FN

EXIT_PREEMPTED = "preempted"     # a long hypercall made a continuation: serve, then resume
IDLE_WAIT_S = 1.0                # idle: a message or a deadline wakes us; this is a backstop


class Pcpu:
    def __init__(self, boot: dict):
        self.index = boot["index"]
        self.nr_pcpus = boot["nr_pcpus"]
        self.console_io_for_all = boot["console_io"] == "all"
        self.ram = MachineRAM.attach(boot["fd"], boot["ram_bytes"])
        self.layout = Layout.compute(boot["ram_bytes"], self.nr_pcpus, trace_pages=boot.get("trace_pages", 0))
        self.locks = Locks(self.ram.fd)
        self.frames = FrameTable(self.ram, self.layout, self.locks)
        self.domains = DomainTable(self.ram, self.layout)

        # State the collaborators share.
        self.sched: SchedCore | None = None     # created once time is running (lifecycle.start)
        self.vcpus: dict[int, Vcpu] = {}        # the domains this PCPU hosts
        self.current: Vcpu | None = None        # the one on the core (set_current)
        self.resume_eip = 0                     # where the current domain goes on
        self.exit = None                        # why the running slice stopped
        self.halted = False
        self.started = False
        self.pending_migrations: list = []      # (domid, target), done between slices
        self.ended_cpu_time: dict[int, int] = {}
        self.counts = {"hypercalls": 0, "slices": 0, "switches": 0, "traps": 0}
        self.emulated_s = 0.0
        self.ipi_rtt_us: list[float] = []
        self.ipi_steps_us: dict[str, list[float]] = {}   # lifecycle.PING_STEPS -> samples
        self._hypercall_nr = None               # the hypercall the hook is running, if any

        # Collaborators, each given what it needs.
        self.core = CpuCore(self.ram, self.layout, self.index, boot["probes"])
        self.instr_rate = self.core.measure_rate()
        self.clock = PcpuClock(self, boot)
        self.trace = PcpuTrace(self)         # this PCPU's trace buffer (pcpu/trace.py)
        self.trace_mask = self.trace.mask    # hot paths test it before tracing
        self.core.attach(on_interrupt=self._on_interrupt, on_rdtsc=self.clock.read_tsc)
        self.mailbox = Mailbox(self, boot["tag"], self.core.stop,
                               immediate={M.IPI_TSC_SYNC: self.clock.zero_tsc})
        self.paging = Paging(self)
        self.mem = GuestMemory(self.ram, self.layout.nr_frames, reconnect=self.paging.reconnect)
        self.events = EventDelivery(self)    # event channels, VIRQs, upcalls
        self.traps = GuestTraps(self)        # bouncing faults and interrupts
        self.console = ConsoleOut(self.mailbox, self.index)
        self.ctrl_if = CtrlIf(self)          # control interfaces, Domain-0's console input
        self.hv = HvContext(self)
        self.privcmd = Privcmd(self)         # Domain-0's user space (pcpu/privcmd.py)
        self.printk = PrintkRing(self.clock)  # the hypervisor's console ring (DOM0_READCONSOLE)
        self.msrs = MsrFile(self)             # DOM0_MSR
        self.pending_kills: list = []         # (domid, caller): torn down once off the CPU (pcpu/domain.py)

    def set_current(self, vcpu: Vcpu | None) -> None:
        """The domain on the core from now on (schedule.switch_to)."""
        self.current = self.hv.current = vcpu

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
                self.current.hypercall_results["hypervisor_error"] += 1
            lifecycle.end_domain(self, self.current, "crashed", -1, error_detail(what, e))
            self.core.stop()

    def _interrupt(self, vector: int) -> None:
        core = self.core
        regs = core.entry_registers()
        cpl = regs[0] & 3
        self._hypercall_nr = None
        if vector == HYPERCALL_VECTOR and cpl == 1:
            self._hypercall(regs[1:])
            return
        v = self.current
        if v.thread.fast_trap == vector and self.traps.fast_trap(v, vector, core.eip(), cpl):
            return    # direct system call: delivered without leaving the slice
        self.exit = ("trap", vector, core.eip(), cpl)
        core.stop()

    def _hypercall(self, args: list) -> None:
        """args: EAX (the number), EBX, ECX, EDX, ESI, EDI."""
        core = self.core
        nr = self._hypercall_nr = args[0] & (NR_HYPERCALLS - 1)
        self.counts["hypercalls"] += 1
        v = self.current
        v.hypercalls += 1
        v.hypercalls_by_nr[nr] += 1
        if self.trace_mask & TRC_HCALL_ENTRY:
            self.trace.put(TRC_HCALL_ENTRY, v.domid, nr, args[1], args[2], args[3])
        rc = do_hypercall(self.hv, *args)
        core.set_result(rc)
        if self.trace_mask & TRC_HCALL_EXIT:
            self.trace.put(TRC_HCALL_EXIT, v.domid, nr, rc)
        # The result histogram, with int keys (named at report time): errnos and 0
        # as themselves, any positive value as 1.
        key = rc if rc <= 0 else 1
        if self.exit == EXIT_PREEMPTED:
            key = "continuation"
        v.hypercall_results[key] += 1
        # Leave the slice to reschedule, or (test_all_events on the way back to the
        # guest) for run_slice to bounce to the event callback.
        if self.exit is not None or event_pending(v.shared):
            core.stop()

    # ---- long hypercalls (Xen's continuations) ---------------------------------------
    def preempt_pending(self) -> bool:
        """Xen's hypercall_preempt_check(): this PCPU has other work due (a message, a
        timer, the end of the slice), so a long hypercall should stop here."""
        w = self.mailbox.watcher
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

    # ---- between slices ---------------------------------------------------------------
    def _for_domain(self, v: Vcpu, what: str, fn, *args) -> None:
        """Run hypervisor code on behalf of domain v: an error in it crashes v (with
        the reason and where), not the PCPU."""
        try:
            fn(*args)
        except Exception as e:
            lifecycle.end_domain(self, v, "crashed", -1, error_detail(what, e))

    def _upcall(self) -> None:
        """Deliver a pending upcall to the current domain over its context at the
        resume point (between slices)."""
        v = self.current
        try:
            start = self.events.deliver_upcall(v, self.traps.context(self.resume_eip))
        except BounceError as e:
            lifecycle.end_domain(self, v, "crashed", -1, f"event upcall: {e}")
            return
        if start is not None:
            self.resume_eip = start

    def _handle_trap(self, vector: int, eip: int, cpl: int) -> None:
        """A fault or `int n` the hook did not consume: the memory code sees page
        faults first (e.g. Xen's writable-page-table fixups: the instruction is
        retried); everything else is bounced to the guest's handler, and a domain
        that cannot take it crashes."""
        self.counts["traps"] += 1
        v = self.current
        trap = self.traps.classify(vector, eip, cpl)     # consumes the fault state
        if vector == x86.PF and not trap.soft:
            if self.paging.page_fault(trap.cr2, trap.error_code, self.core.cpl()):
                self.resume_eip = eip
                return
            trap.cr2 = self.paging.guest_cr2(trap.cr2)     # an LDT shadow fault: the guest's address
        try:
            self.resume_eip = self.traps.deliver(v, trap)
        except BounceError as e:
            lifecycle.end_domain(self, v, "crashed", vector, str(e))

    # ---- main loop ------------------------------------------------------------------
    def run_slice(self) -> None:
        v = self.current
        w = self.mailbox.watcher
        self.exit = None
        deadline_ns = self.clock.host_deadline(schedule.next_deadline(self))
        if event_pending(v.shared) and self.core.cpl() != 0:
            self._for_domain(v, "event upcall", self._upcall)     # test_all_events
            if v.ended:
                return
        w.begin_slice(deadline_ns)
        if w.queue:
            w.end_slice()
            return
        if v.woken_ns:                  # a timed wake-up ends here (Vcpu.woken)
            v.woken_samples.append((time.monotonic_ns() - v.woken_ns) / 1000)
            v.woken_ns = 0
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
            w.end_slice()
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
            lifecycle.end_domain(self, v, "crashed", -1,
                                 f"emulation error at eip {self.resume_eip:#010x}: {ex[1]}")

    def serve(self) -> None:
        self.mailbox.watcher.start()
        self.mailbox.send_machine(M.ONLINE, self.index, os.getpid())
        try:
            self._serve()
        except MachineHalting:
            pass                # halted while waiting for a peer: report and stop
        self.mailbox.send_machine(M.STATS, self.index, pcpu_stats(self))

    def _serve(self) -> None:
        mailbox = self.mailbox
        w = mailbox.watcher
        while not self.halted:
            mailbox.handle_messages()
            if self.halted:
                break
            if not self.started:
                w.wake.wait(IDLE_WAIT_S)
                w.wake.clear()
                continue
            if self.sched.need_resched:     # e.g. the domain just blocked: off the CPU first
                schedule.reschedule(self)
            schedule.run_timers(self)
            if self.pending_migrations:
                lifecycle.do_pending_migrations(self)
            if self.pending_kills:
                domain.do_pending_kills(self)
            if self.sched.poll(self.clock.now()):
                self.trace.trace(TRC_SCHED_S_TIMER_FN)      # the slice ended (s_timer)
                schedule.reschedule(self)
            if self.privcmd.jobs and self.privcmd.service():
                continue                    # Domain-0's user space ran: look again
            if self.current is None:
                host = self.clock.host_deadline(schedule.next_deadline(self))
                timeout = IDLE_WAIT_S if host is None else \
                    max(0.0, min(IDLE_WAIT_S, (host - time.monotonic_ns()) / 1e9))
                if not w.queue:
                    w.wake.wait(timeout)
                w.wake.clear()
                continue
            self.run_slice()

    def close(self) -> None:
        self.mailbox.close()
