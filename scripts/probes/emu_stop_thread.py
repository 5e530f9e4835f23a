"""Probe: uc.emu_stop() called from another thread ends a running uc.emu_start(),
because emu_start releases the GIL while it emulates.

1. A pure-Python thread keeps counting while the main thread is inside an
   emu_start that a timer thread stops after 0.1 s (neither thread could run if
   emu_start held the GIL).
2. A watcher thread stops a spinning guest STOPS times, each 0.2-1 ms after the
   slice began, repeating the stop every millisecond until the main thread has
   returned (as smpxen/pcpu/watcher.py does: a stop issued just before emu_start
   begins is ignored). Reported: the latency from the first emu_stop call to
   emu_start's return, with Unicorn's default stop points and with smpxen's
   correction that takes stops only at translation-block starts
   (smpxen/pcpu/ucpatch.py; scripts/probes/stop_rollback.py shows why).

    python scripts/probes/emu_stop_thread.py [STOPS]      (default 500)

Exits 1 if the counting thread did not run or the timer's stop did not end the
run, or a slice ran to its end although it was stopped."""
import ctypes
import mmap
import random
import statistics
import sys
import threading
import time

from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as R

from _bare32 import asm

CODE, EXIT = 0x1000, 0xF000
ITERATIONS = 1 << 26            # a slice nobody stops runs for seconds, then ends at hlt
LOOP = f"mov ecx, {ITERATIONS}\nagain:\n inc dword ptr [0x8000]\n dec ecx\n jnz again\n hlt"


def make_core(block_starts_only: bool) -> tuple[Uc, int]:
    ram = mmap.mmap(-1, 0x10000)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, len(ram), UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(ram)))
    uc._ram = ram                          # keep the mapping alive with the core
    if block_starts_only:
        from smpxen.pcpu.ucpatch import forbid_mid_instruction_exits
        forbid_mid_instruction_exits(uc._uch)
    code = asm(LOOP, CODE)
    uc.mem_write(CODE, code)
    return uc, CODE + len(code) - 1


def python_progress_during_emulation() -> tuple[int, bool]:
    """(loops a Python thread made during a 0.1 s emu_start, whether a timer thread's
    emu_stop ended that run early). Neither could happen if emu_start held the GIL."""
    uc = make_core(False)[0]
    # bounded, so that a run emu_stop cannot end still returns (after seconds)
    uc.mem_write(0x2000, asm(f"mov ecx, {ITERATIONS * 8}\nspin:\n dec ecx\n jnz spin\n hlt", 0x2000))
    count, done = [0], threading.Event()

    def counter():
        while not done.is_set():
            count[0] += 1
    t = threading.Thread(target=counter)
    t.start()
    timer = threading.Timer(0.1, uc.emu_stop)
    timer.start()
    before = count[0]
    uc.emu_start(0x2000, EXIT)
    during = count[0] - before
    done.set()
    t.join()
    timer.join()
    return during, uc.reg_read(R.UC_X86_REG_ECX) != 0


def stop_latencies(stops: int, block_starts_only: bool) -> tuple[list[float], int]:
    """(latencies in us, slices that ran to the end despite the stop)."""
    uc, hlt = make_core(block_starts_only)
    running, returned = threading.Event(), threading.Event()
    first_stop = [0]
    finish = [False]

    def watcher():
        rng = random.Random(1)
        while not finish[0]:
            if not running.wait(0.1):
                continue
            time.sleep(rng.uniform(0.0002, 0.001))
            first_stop[0] = time.perf_counter_ns()
            uc.emu_stop()
            while not returned.wait(0.001):
                uc.emu_stop()
            returned.clear()
    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    latencies, ran_out = [], 0
    for _ in range(stops):
        uc.reg_write(R.UC_X86_REG_ECX, ITERATIONS)
        running.set()
        uc.emu_start(CODE + 5, EXIT)          # past the `mov ecx`
        end = time.perf_counter_ns()
        running.clear()
        returned.set()
        if uc.reg_read(R.UC_X86_REG_EIP) >= hlt:
            ran_out += 1
        latencies.append((end - first_stop[0]) / 1000)
        while returned.is_set():
            time.sleep(0)                     # let the watcher see the return
    finish[0] = True
    thread.join()
    return latencies, ran_out


def summary(us: list[float]) -> str:
    us = sorted(us)
    return (f"median {statistics.median(us):.0f} us, p99 {us[int(0.99 * (len(us) - 1))]:.0f} us, "
            f"max {us[-1]:.0f} us")


def main() -> int:
    stops = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    progress, stopped_early = python_progress_during_emulation()
    default, ran_default = stop_latencies(stops, False)
    blocks, ran_blocks = stop_latencies(stops, True)
    print(f"a Python thread looped {progress} times during a 0.1 s emu_start (GIL released)")
    print(f"emu_stop from a thread -> emu_start returns, {stops} stops: default {summary(default)}; "
          f"block starts only {summary(blocks)}")
    failures = []
    if progress == 0 or not stopped_early:
        failures.append(f"emu_start held the GIL: the counting thread made {progress} loops, "
                        f"the timer's emu_stop {'ended' if stopped_early else 'did not end'} the run")
    if ran_default or ran_blocks:
        failures.append(f"{ran_default + ran_blocks} slices ran to the end although stopped")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
