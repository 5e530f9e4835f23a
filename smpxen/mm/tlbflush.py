"""Xen's TLB-flush clock (xen/arch/x86/flushtlb.c, asm-x86/flushtlb.h), over the
shared MachineHeader so every PCPU process sees one clock.

The clock ticks on every TLB flush on any PCPU; each PCPU records the clock value
of its last flush (tlbflush_time) and each frame records when it was last used in
a way that may have left it in some TLB (tlbflush_timestamp). A PCPU whose last
flush is newer than a frame's stamp cannot hold a stale entry for that frame, so
it needs no flush IPI for it. smpxen runs a second per-PCPU time on the same clock
for Unicorn's translation cache (tbflush_time): a TLB flush does not drop
translated code, so "may still run stale code from this frame" is tracked apart.

The clock is 32 bits and starts at 1; at one tick per flush it does not wrap in a
run of any realistic length, so Xen's wrap period (NEW_TLBFLUSH_CLOCK_PERIOD) is
not modelled; NEED_FLUSH still treats a zero clock as "flush", like Xen."""
from __future__ import annotations

CLOCK_MASK = 0xFFFFFFFF


def need_flush(curr_time: int, cpu_stamp: int, lastuse_stamp: int) -> bool:
    """NEED_FLUSH: may a CPU that last flushed at cpu_stamp still cache something
    used at lastuse_stamp?"""
    return curr_time == 0 or (cpu_stamp <= lastuse_stamp <= curr_time)


def mask_cpus(mask: int, nr_pcpus: int) -> list[int]:
    """PCPUs named by a frame's 32-bit cpu_mask (bit = index % 32)."""
    return [c for c in range(nr_pcpus) if mask >> (c & 31) & 1]


def cpu_bit(cpu: int) -> int:
    return 1 << (cpu & 31)


class FlushClock:
    """The clock operations of one process. Ticks happen under Locks.mm (the
    header is shared and Python has no cross-process atomics)."""

    def __init__(self, frametable):
        self.header = frametable.header
        self.lock = frametable.locks.mm
        if self.header.tlbflush_clock == 0:
            self.header.tlbflush_clock = 1

    def now(self) -> int:
        return self.header.tlbflush_clock

    def tick(self) -> int:
        """STEP 1 of write_cr3: advance the clock before flushing; returns the new time."""
        with self.lock:
            t = (self.header.tlbflush_clock + 1) & CLOCK_MASK
            self.header.tlbflush_clock = t
            return t

    def flushed(self, cpu: int, t: int, translations: bool = False) -> None:
        """STEP 3: record that `cpu` flushed at time t (after the flush itself)."""
        self.header.tlbflush_time[cpu] = t
        if translations:
            self.header.tbflush_time[cpu] = t

    def cpus_needing_flush(self, cpus, stamp: int, translations: bool = False) -> list[int]:
        now = self.header.tlbflush_clock
        times = self.header.tbflush_time if translations else self.header.tlbflush_time
        return [c for c in cpus if need_flush(now, times[c], stamp)]
