"""A PCPU's time: its cycle counter, the time model that turns it into system time,
bringing time up at boot (calibration against the platform timer, the xen2 barrier),
and the timers that fire on system time. What a fired timer does to domains is
smpxen/pcpu/schedule.py's business: `due()` only says which fired."""
from __future__ import annotations

import collections
import time

from smpxen.ipc import messages as M
from smpxen.pcpu.timebase import CALIBRATE_WINDOW_NS, PLATFORM_SAMPLES, PercpuTimebase, Xen2Timebase
from smpxen.pcpu.timers import TimerHeap
from smpxen.shm.timeshared import SharedTime
from smpxen.timekeeping.cycles import TSC_MASK, CycleCounter
from smpxen.xen.trace import TRC_TIME_CALIBRATE, TRC_TIME_STAMP

TICK_NS = 10_000_000          # Xen's per-CPU t_timer (and the PIT period)
FALLBACK_NS = 500_000_000     # Xen's fallback_timer
EPOCH_NS = 1_000_000_000      # percpu model: calibration against the platform timer
# xen2's boot barrier zeroes every counter at one host instant this far ahead of
# PCPU 0's message (all PCPU processes read the same monotonic clock).
BARRIER_LEAD_NS = 2_000_000
# Timers that do something only for the domain on the CPU: an idle PCPU does not
# wake for them (smpxen/pcpu/schedule.py next_deadline).
PERIODIC = {"tick": TICK_NS, "fallback": FALLBACK_NS}
WAKE_SAMPLES = 100_000        # per step of a timer wake-up, the latest kept


class PcpuClock:
    def __init__(self, pcpu, boot: dict):
        self.pcpu = pcpu
        clock = boot["clock"]
        self.tsc = CycleCounter(clock["freq_hz"], clock["offset_cycles"], clock["drift_ppm"],
                                origin_ns=boot["epoch_ns"])
        self.model = boot["time_model"]
        self.wallclock_ns = boot["wallclock_ns"]
        self.shared_time = SharedTime(pcpu.ram, pcpu.layout, pcpu.locks)
        tb = Xen2Timebase if self.model == "xen2" else PercpuTimebase
        self.timebase = tb(self.read_tsc, self.shared_time)
        self.timers = TimerHeap()
        self.pit_host_deadline = None      # xen2 timer CPU: next platform (PIT) tick, host ns
        self.tsc_synced = False            # xen2 AP: the boot CPU's barrier message arrived
        self.platform_rtts: list[int] = []
        self._last_now = 0
        # Where set_timer_op wake-ups go, in us (the report's timer_wake_us): how late
        # the PCPU fired the timer, then from firing it to entering the domain.
        self.wake_steps = {step: collections.deque(maxlen=WAKE_SAMPLES) for step in ("fire_late", "to_guest")}

    def read_tsc(self) -> int:
        """This PCPU's cycle counter (what rdtsc returns); it runs on host time."""
        return self.tsc.read(time.monotonic_ns())

    def now(self) -> int:
        """System time in ns (Xen's NOW()) under the configured time model, never less
        than this PCPU's previous reading. Xen 2.0's own guard, one unlocked global
        prev_now, can be lowered by a PCPU whose counter lags (seen with 64 PCPUs:
        586 us backwards), and the scheduler's accounting needs local monotonicity."""
        now = self.timebase.now()
        if now < self._last_now:
            return self._last_now
        self._last_now = now
        return now

    def zero_tsc(self, msg) -> None:
        """The xen2 boot barrier, in the watcher thread when PCPU 0's message lands: the
        counter reads 0 at the host instant the message names, however late it came."""
        self.tsc.write(0, msg[2])

    def host_deadline(self, stime: int | None) -> int | None:
        """When (host ns) system time on this PCPU reaches `stime`: the local timer
        is programmed from the local clock, as Xen programs the APIC."""
        if stime is None:
            return self.pit_host_deadline
        host = time.monotonic_ns() + max(0, stime - self.now())
        if self.pit_host_deadline is not None:
            host = min(host, self.pit_host_deadline)
        return host

    # ---- the platform timer (the machine process, over ZeroMQ) ----------------------
    def platform_sample(self) -> tuple[int, int, int]:
        """(TSC at the midpoint, platform ns, round trip in cycles) of the fastest of a
        few platform-timer reads: the midpoint halves the latency error."""
        pcpu = self.pcpu
        best = None
        for _ in range(PLATFORM_SAMPLES):
            seq = pcpu.mailbox.next_seq()
            t0 = self.read_tsc()
            pcpu.mailbox.send_machine(M.PLATFORM_TIME_REQ, pcpu.index, seq)
            platform_ns = pcpu.mailbox.wait_reply(seq, "the platform timer")
            t1 = self.read_tsc()
            rtt = (t1 - t0) & TSC_MASK            # the 64-bit counter may wrap in between
            if best is None or rtt < best[2]:
                best = ((t0 + rtt // 2) & TSC_MASK, platform_ns, rtt)
        self.platform_rtts.append(best[2])
        return best

    def calibrate_tsc(self) -> int:
        """Cycles per second of this PCPU's counter, measured against the platform
        timer over Xen 2.0's calibration window."""
        tsc0, ns0, _ = self.platform_sample()
        time.sleep(CALIBRATE_WINDOW_NS / 1e9)
        tsc1, ns1, _ = self.platform_sample()
        return ((tsc1 - tsc0) & TSC_MASK) * 1_000_000_000 // (ns1 - ns0)

    # ---- boot ----------------------------------------------------------------------
    def start(self) -> None:
        """Bring up system time under the configured model (before any domain runs)."""
        pcpu = self.pcpu
        rtc_sec = self.wallclock_ns // 1_000_000_000      # a CMOS RTC has whole seconds
        if self.model == "xen2":
            if pcpu.index == 0:
                freq = self.calibrate_tsc()
                # The barrier: Xen's CPUs write 0 to their counters together (within
                # nanoseconds). Zeroing each as its message arrived left the counters
                # as far apart as the host's scheduling put the messages: up to ~0.5 ms.
                zero_at = time.monotonic_ns() + BARRIER_LEAD_NS
                for cpu in range(1, pcpu.nr_pcpus):
                    pcpu.mailbox.send_ipi(cpu, M.IPI_TSC_SYNC, zero_at)
                self.tsc.write(0, zero_at)
                time.sleep(max(0, zero_at - time.monotonic_ns()) / 1e9)
                self.timebase.boot(freq, rtc_sec, 0)
                self.pit_host_deadline = time.monotonic_ns() + TICK_NS
            else:
                pcpu.mailbox.serve_until(lambda: self.tsc_synced and self.shared_time.g.valid,
                                 "TSC synchronisation from the boot CPU")
        else:
            freq = self.calibrate_tsc()
            tsc, platform_ns, _ = self.platform_sample()
            self.timebase.boot(freq, tsc, platform_ns)
            if pcpu.index == 0:
                with self.shared_time.lock:
                    self.shared_time.write(wc_base_sec=rtc_sec, wc_base_usec=0)
        now = self.now()
        self.timers.set("tick", now + TICK_NS)
        self.timers.set("fallback", now + FALLBACK_NS)
        if self.model == "percpu":
            self.timers.set("calibrate", now + EPOCH_NS)

    # ---- timers --------------------------------------------------------------------
    def due(self) -> list:
        """Run the clock's own timers (PIT stamp, calibration) and re-arm the periodic
        ones; returns the keys whose action belongs to the PCPU: "tick", "fallback",
        ("domain", domid)."""
        host = time.monotonic_ns()
        while self.pit_host_deadline is not None and host >= self.pit_host_deadline:
            stamp = self.timebase.pit_tick(host - self.pit_host_deadline)
            self.pcpu.trace.trace(TRC_TIME_STAMP, stamp.stime_irq, stamp.stime_irq >> 32,
                                  stamp.full_tsc_irq, stamp.full_tsc_irq >> 32)
            self.pit_host_deadline += TICK_NS
        now = self.now()
        fired = []
        for key in self.timers.pop_due(now):
            if key == "tick":
                self.timers.set("tick", now + TICK_NS)
            elif key == "fallback":
                self.timers.set("fallback", now + FALLBACK_NS)
            elif key == "calibrate":
                self._calibrate()
                self.timers.set("calibrate", self.now() + EPOCH_NS)
                continue
            fired.append(key)
        return fired

    def resume_ticks(self) -> None:
        """Leaving idle: an idle PCPU sleeps through its tick and fallback timers
        (they act only on a running domain), so re-arm any that went by; the
        domain switched in gets its first tick a period from now, as it would on
        Xen's periodic timer, not at once."""
        now = self.now()
        for key, period in PERIODIC.items():
            due = self.timers.deadline(key)
            if due is not None and due < now:
                self.timers.set(key, now + period)

    def _calibrate(self) -> None:
        """percpu: re-fit this PCPU's scale against the platform timer (traced with
        the local and platform times, then a fresh time anchor for the new scale)."""
        tsc, platform_ns, _ = self.platform_sample()
        local, warps = self.timebase.raw_now(tsc), self.timebase.warps
        self.timebase.calibrate(tsc, platform_ns)
        trace = self.pcpu.trace
        trace.trace(TRC_TIME_CALIBRATE, local, local >> 32, platform_ns, platform_ns >> 32,
                    self.timebase.warps - warps)
        trace.time_up()

    def set_domain_timer(self, vcpu, deadline: int) -> None:
        """set_timer_op: one-shot VIRQ_TIMER at absolute system time `deadline` in the
        domain's view of time; 0 cancels."""
        if deadline == 0:
            self.timers.cancel(("domain", vcpu.domid))
            vcpu.timer_host_ns = 0
        else:
            stime = deadline - vcpu.time_offset
            self.timers.set(("domain", vcpu.domid), stime)
            vcpu.timer_host_ns = time.monotonic_ns() + max(0, stime - self.now())

    def domain_timer_fired(self, vcpu) -> None:
        now = time.monotonic_ns()
        if vcpu.timer_host_ns:
            self.wake_steps["fire_late"].append((now - vcpu.timer_host_ns) / 1000)
            vcpu.timer_host_ns = 0
        vcpu.woken(self.wake_steps["to_guest"], now)

    def publish(self, shared, time_offset: int, domain_time: int) -> None:
        """Write the time fields of a domain's shared_info, bracketed by the two
        version counters (Xen's update_dom_time). Only this PCPU writes them: it
        hosts the domain, and the domain is not running while we do it."""
        f = self.timebase.shared_fields()
        shared.time_version1 = (shared.time_version1 + 1) & 0xFFFFFFFF
        shared.cpu_freq = f.cpu_freq
        shared.tsc_timestamp = f.tsc_timestamp
        shared.system_time = f.system_time + time_offset
        shared.wc_sec = f.wc_sec
        shared.wc_usec = f.wc_usec
        shared.domain_time = domain_time
        shared.time_version2 = (shared.time_version2 + 1) & 0xFFFFFFFF

    def describe(self) -> dict:
        return dict(self.timebase.describe(), platform_rtt_cycles_min=min(self.platform_rtts, default=None))
