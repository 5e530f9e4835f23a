"""Machine-wide time state in the hypervisor region (header frame, second half),
shared by the PCPUs under Locks.time for writers and a sequence counter for
readers (a reader retries while the counter is odd or changed).

It holds what Xen 2.0 keeps in time.c globals: the boot CPU's calibration
(cpu_freq and the scale), the timebase stamp the timer CPU rewrites every tick,
the wall clock, and Xen's single `prev_now`. The percpu model uses only the wall
clock here; its per-CPU stamps stay in each PCPU process."""
from __future__ import annotations

import ctypes

u32, u64, s64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64

GLOBAL_TIME_OFFSET = 2048      # within the header frame


class GlobalTime(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [
        ("seq", u32),
        ("valid", u32),            # set once the boot CPU has calibrated and synchronised
        ("cpu_freq", u64),
        ("rdtsc_bitshift", u32),
        ("st_scale_i", u32),
        ("st_scale_f", u32),
        ("shifted_tsc_irq", u32),
        ("full_tsc_irq", u64),
        ("stime_irq", s64),
        ("wc_sec", u32),
        ("wc_usec", u32),
        ("prev_now", s64),         # Xen 2.0's one (racy) monotonic guard for get_s_time
        ("wc_base_sec", u32),      # percpu model: UTC at system time 0
        ("wc_base_usec", u32),
    ]


FIELDS = [name for name, _ in GlobalTime._fields_ if name != "seq"]


class SharedTime:
    def __init__(self, ram, layout, locks):
        self.g = GlobalTime.from_buffer(ram.mem, (layout.header_mfn << 12) + GLOBAL_TIME_OFFSET)
        self.lock = locks.time

    def read(self) -> dict:
        return self.snapshot()[1]

    def snapshot(self) -> tuple[int, dict]:
        """(seq, fields): a consistent copy and the even counter it was taken at; a
        reader may keep what it derived from it while `g.seq` still equals seq."""
        g = self.g
        while True:
            s1 = g.seq
            if s1 & 1:
                continue
            out = {name: getattr(g, name) for name in FIELDS}
            if g.seq == s1:
                return s1, out

    def write(self, **fields) -> None:
        """Caller holds self.lock."""
        g = self.g
        g.seq += 1
        for name, value in fields.items():
            setattr(g, name, value)
        g.seq += 1
