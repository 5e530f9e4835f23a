"""A PCPU's notion of system time, under either time model. Neither model reads
the configured skew: all they learn comes from their own cycle counter (rdtsc),
from messages (the machine process answers "platform time" requests; the boot CPU
tells the others when to zero their counters) and, for xen2, from the timebase
stamp the timer CPU publishes in shared hypervisor memory, as Xen 2.0 keeps it in
memory every CPU reads.

xen2 (Xen 2.0, time.c): the boot CPU calibrates its counter against the platform
timer, all CPUs zero their counters together at a barrier, the timer CPU (PCPU 0)
stamps (its TSC, system time += 10 ms, wall clock += 10 ms) at every tick, and
every CPU extrapolates from that stamp with its own counter. Nothing corrects
drift.

percpu (Xen 3.0): each CPU calibrates its own counter and keeps its own stamp,
re-fitting its scale against the platform timer every epoch (1 s) and warping
forward when it fell behind."""
from __future__ import annotations

from smpxen.timekeeping import xen2, xen3
from smpxen.timekeeping.wallclock import wallclock_at, xen2_settime

CALIBRATE_WINDOW_NS = xen2.CALIBRATE_WINDOW_NS     # Xen 2.0 gates the PIT for 1/20 s
PLATFORM_SAMPLES = 5                                # keep the fastest round trip


class Xen2Timebase:
    name = "xen2"

    def __init__(self, read_tsc, shared):
        self.read_tsc = read_tsc
        self.shared = shared
        self._seq = -1               # the stamp's sequence count when we last read it
        self._scale_stamp = None

    def _scale_and_stamp(self):
        """The scale and stamp, read again only when the timer CPU has written them
        (every 10 ms): system time is read a dozen times per wake-up, and copying the
        shared record each time was a third of a timer wake-up's work."""
        shared = self.shared
        if shared.g.seq != self._seq:
            self._seq, g = shared.snapshot()
            self._scale_stamp = (
                xen2.Xen2Scale(g["cpu_freq"], g["rdtsc_bitshift"], g["st_scale_i"], g["st_scale_f"]),
                xen2.Xen2Stamp(g["full_tsc_irq"], g["shifted_tsc_irq"], g["stime_irq"],
                               g["wc_sec"], g["wc_usec"]))
        scale, stamp = self._scale_stamp
        return scale, stamp, shared.g.prev_now    # written outside the count, as in Xen

    def now(self) -> int:
        scale, stamp, prev = self._scale_and_stamp()
        now = xen2.get_s_time(self.read_tsc(), stamp, scale, prev)
        if now != prev:
            # Xen 2.0's prev_now is one unlocked global: written without the lock here too.
            self.shared.g.prev_now = now
        return now

    def raw_now(self, tsc: int | None = None) -> int:
        """System time from the stamp and the local counter (or `tsc`), without the
        global monotonic guard: what a guest extrapolating on this CPU computes."""
        scale, stamp, _ = self._scale_and_stamp()
        return stamp.stime_irq + xen2.get_time_delta(self.read_tsc() if tsc is None else tsc, stamp, scale)

    def ns_per_cycle_q32(self) -> int:
        """The scale extrapolation uses, as ns per counter cycle in 32.32 fixed point."""
        scale, _, _ = self._scale_and_stamp()
        return scale.scale >> scale.rdtsc_bitshift

    def shared_fields(self) -> xen2.SharedTimeFields:
        scale, stamp, _ = self._scale_and_stamp()
        return xen2.update_dom_time(stamp, scale)

    # -- boot CPU / timer CPU only --
    def boot(self, cpu_freq: int, wc_sec: int, wc_usec: int) -> None:
        """After calibration, at the moment every counter is zeroed: system time 0.
        The scale is computed wide, so counters of 4 GHz and more work (see init_scale)."""
        scale = xen2.init_scale(cpu_freq, wide=True)
        stamp = xen2.init_stamp(self.read_tsc(), scale, wc_sec, wc_usec)
        with self.shared.lock:
            self.shared.write(valid=1, cpu_freq=scale.cpu_freq, rdtsc_bitshift=scale.rdtsc_bitshift,
                              st_scale_i=scale.st_scale_i, st_scale_f=scale.st_scale_f,
                              full_tsc_irq=stamp.full_tsc_irq, shifted_tsc_irq=stamp.shifted_tsc_irq,
                              stime_irq=stamp.stime_irq, wc_sec=stamp.wc_sec, wc_usec=stamp.wc_usec,
                              prev_now=0)

    def pit_tick(self, late_ns: int = 0) -> xen2.Xen2Stamp:
        """The timer CPU's PIT interrupt. `late_ns` is how long after the PIT fired
        the simulator got to it (its polling, not Xen's IRQ latency, which is
        microseconds): the stamp takes the counter value at the interrupt, as the
        handler's rdtsc would on hardware."""
        scale, stamp, _ = self._scale_and_stamp()
        irq_tsc = self.read_tsc() - late_ns * scale.cpu_freq // 1_000_000_000
        stamp = xen2.timer_tick(stamp, irq_tsc, scale)
        with self.shared.lock:
            self.shared.write(full_tsc_irq=stamp.full_tsc_irq, shifted_tsc_irq=stamp.shifted_tsc_irq,
                              stime_irq=stamp.stime_irq, wc_sec=stamp.wc_sec, wc_usec=stamp.wc_usec)
        return stamp

    def settime(self, secs: int, usecs: int, system_time_base: int) -> None:
        with self.shared.lock:
            scale, stamp, _ = self._scale_and_stamp()
            stamp = xen2.do_settime(stamp, secs, usecs, system_time_base)
            self.shared.write(wc_sec=stamp.wc_sec, wc_usec=stamp.wc_usec)

    def describe(self) -> dict:
        scale, stamp, _ = self._scale_and_stamp()
        return {"model": "xen2", "cpu_freq_hz": scale.cpu_freq}


class PercpuTimebase:
    name = "percpu"

    def __init__(self, read_tsc, shared):
        self.read_tsc = read_tsc
        self.shared = shared
        self.cpu_time: xen3.CpuTime | None = None
        self.calibrations = 0
        self.warps = 0

    def boot(self, cpu_freq: int, tsc: int, master_stime: int) -> None:
        self.cpu_time = xen3.init_percpu_time(tsc, master_stime, xen3.set_time_scale(cpu_freq))

    def now(self) -> int:
        return xen3.get_s_time(self.cpu_time, self.read_tsc())

    def raw_now(self, tsc: int | None = None) -> int:
        return xen3.get_s_time(self.cpu_time, self.read_tsc() if tsc is None else tsc)

    def ns_per_cycle_q32(self) -> int:
        """The scale extrapolation uses, as ns per counter cycle in 32.32 fixed point."""
        sc = self.cpu_time.tsc_scale
        return sc.mul_frac << sc.shift if sc.shift >= 0 else sc.mul_frac >> -sc.shift

    def calibrate(self, tsc: int, master_stime: int) -> None:
        local = xen3.get_s_time(self.cpu_time, tsc)
        new = xen3.local_time_calibration(self.cpu_time, tsc, local, master_stime)
        if new is not self.cpu_time:
            self.calibrations += 1
            if local < master_stime:
                self.warps += 1
            self.cpu_time = new

    def shared_fields(self) -> xen2.SharedTimeFields:
        """A fresh (counter, system time) pair on every update, not the calibration
        stamp: 2.0 guests extrapolate from the low 32 bits of the counter, which wrap
        in about a second at GHz rates, while calibration stamps are an epoch apart."""
        ct = self.cpu_time
        tsc = self.read_tsc()
        stime = xen3.get_s_time(ct, tsc)
        g = self.shared.read()
        wc_sec, wc_usec = wallclock_at(g["wc_base_sec"], g["wc_base_usec"], 0, stime)
        # Round the frequency up to whole kHz: XenLinux derives its rate from cpu_freq/1000
        # (truncated), and a guest clock running even a few ppm fast would step back
        # at the next update; rounded up, it can only lag, by under a microsecond.
        freq_khz = -(-xen3.time_scale_hz(ct.tsc_scale) // 1000)
        return xen2.SharedTimeFields(freq_khz * 1000, tsc, stime & ((1 << 64) - 1), wc_sec, wc_usec)

    def settime(self, secs: int, usecs: int, system_time_base: int) -> None:
        base_sec, base_usec = xen2_settime(secs, usecs, system_time_base, 0)
        with self.shared.lock:
            self.shared.write(wc_base_sec=base_sec, wc_base_usec=base_usec)

    def describe(self) -> dict:
        return {"model": "percpu", "cpu_freq_hz": xen3.time_scale_hz(self.cpu_time.tsc_scale),
                "calibrations": self.calibrations, "warps": self.warps}
