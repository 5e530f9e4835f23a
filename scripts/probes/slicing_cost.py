"""Probe: what each way of cutting Unicorn's emulation into slices costs.

A 4-instruction ALU loop (one translation block per iteration) runs:
- free: one emu_start, nothing attached;
- in emu_start(count=N) slices: Unicorn counts instructions with a hook on every
  instruction;
- in emu_start(timeout=T) slices: Unicorn starts a helper thread per call that
  sleeps in short steps and stops the core when T has passed;
- free, but with a Python UC_HOOK_BLOCK callback that does nothing.
Also the fixed cost of one emu_start call on two instructions, with and without a
timeout, and how many threads the process has while a call runs.
smpxen runs free slices and stops them from its watcher thread (emu_stop_thread.py).

    python scripts/probes/slicing_cost.py [MINSTR]     (default 10 million instructions)

Rates are the best of a few runs (the host may be busy). Exits 1 if count= or a
block hook no longer costs several times the free rate, or timeout= no longer
adds a thread."""
import ctypes
import mmap
import os
import sys
import time

from unicorn import UC_ARCH_X86, UC_HOOK_BLOCK, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as R

from _bare32 import asm

CODE, TINY, EXIT = 0x1000, 0x3000, 0xF000
REPEATS = 3


class Loop:
    def __init__(self, iterations: int):
        ram = mmap.mmap(-1, 0x10000)
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map_ptr(0, len(ram), UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(ram)))
        self._ram = ram
        self.instructions = 2 + 4 * iterations
        code = asm(f"mov ecx, {iterations}\n xor eax, eax\nagain:\n add eax, ecx\n xor edx, eax\n"
                   f" dec ecx\n jnz again\n hlt", CODE)
        uc.mem_write(CODE, code)
        self.end = CODE + len(code) - 1
        uc.mem_write(TINY, asm("int 0x80\n nop\n nop", TINY))
        self.threads = []
        uc.hook_add(UC_HOOK_INTR, lambda _uc, _v, _u: self.threads.append(len(os.listdir("/proc/self/task"))))

    def run(self, **kw) -> tuple[float, int]:
        """(seconds for the whole loop, emu_start calls), best of REPEATS."""
        best, calls = float("inf"), 0
        for _ in range(REPEATS):
            pc, calls = CODE, 0
            t = time.perf_counter()
            while pc != self.end:
                self.uc.emu_start(pc, self.end, **kw)
                calls += 1
                pc = self.uc.reg_read(R.UC_X86_REG_EIP)
            best = min(best, time.perf_counter() - t)
        return best, calls

    def call_cost(self, **kw) -> tuple[float, int]:
        """(us per emu_start call on `int 0x80; nop`, threads seen inside the call)."""
        best = float("inf")
        for _ in range(REPEATS):
            self.threads.clear()
            t = time.perf_counter()
            for _ in range(100):
                self.uc.emu_start(TINY, TINY + 3, **kw)
            best = min(best, (time.perf_counter() - t) / 100 * 1e6)
        return best, max(self.threads)


def main() -> int:
    minstr = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    loop = Loop(int(minstr * 1e6 / 4))
    loop.run()                                  # translate once
    rows, rates = [], {}

    def measure(label, **kw):
        dt, calls = loop.run(**kw)
        rates[label] = loop.instructions / dt / 1e6
        rows.append(f"{label} {rates[label]:.0f} M instr/s ({dt / calls * 1e6:.0f} us/call)")

    measure("free")
    for n in (10_000, 1_000_000):
        measure(f"count={n}", count=n)
    measure("timeout=1ms", timeout=1000)
    plain_us, plain_threads = loop.call_cost()
    timed_us, timed_threads = loop.call_cost(timeout=1_000_000)

    small = Loop(int(minstr * 1e6 / 40))      # a tenth as many instructions
    small.run()
    small.uc.hook_add(UC_HOOK_BLOCK, lambda _uc, _a, _s, _u: None)
    dt, _ = small.run()
    blocks = (small.instructions - 2) / 4
    rates["block hook"] = small.instructions / dt / 1e6
    rows.append(f"Python block hook {rates['block hook']:.1f} M instr/s ({dt / blocks * 1e6:.2f} us/block)")

    print(f"{loop.instructions / 1e6:.0f} M-instruction ALU loop: " + "; ".join(rows))
    print(f"one emu_start call: {plain_us:.1f} us and {plain_threads} thread(s) in the process; "
          f"with timeout= {timed_us:.1f} us and {timed_threads} thread(s)")
    failures = []
    if rates["count=1000000"] * 3 > rates["free"]:
        failures.append("count= slices now run at more than a third of the free rate")
    if rates["block hook"] * 10 > rates["free"]:
        failures.append("a Python block hook now costs less than 10x the free rate")
    if timed_threads <= plain_threads:
        failures.append("emu_start(timeout=) no longer runs a helper thread")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
