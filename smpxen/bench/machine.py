"""Benchmarks of the machine itself: emulation speed against raw Unicorn, the null
hypercall against the cheapest possible Python hook, IPI round trip, boot time."""
from __future__ import annotations

import ctypes
import mmap
import statistics
import tempfile
import time
from pathlib import Path

from smpxen.guests.assemble import assemble_guest, symbol_address
from smpxen.testing import console_values, run_up, write_config

SPIN_ITERATIONS = 50_000_000          # 4 instructions each
HYPERCALLS = 200_000
FREQ_HZ = 2_000_000_000               # the bench configs' cycle-counter frequency


_guest_values = console_values


def _loop_seconds(domain: dict) -> float:
    return _guest_values(domain)["loop_kcycles"] * 1024 / FREQ_HZ


def raw_unicorn_mips(iterations: int = SPIN_ITERATIONS) -> float:
    """The spin guest's loop, byte for byte, on a bare Unicorn core (flat, no paging)."""
    from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, Uc
    from unicorn.x86_const import UC_X86_REG_ECX
    image = assemble_guest("spin")
    base = image.virt_base
    start, end = symbol_address("spin", "spin_loop"), symbol_address("spin", "spin_done")
    code = image.segments[0].data[start - base:end - base]
    ram = mmap.mmap(-1, 1 << 20)
    anchor = ctypes.c_char.from_buffer(ram)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, 1 << 20, UC_PROT_ALL, ctypes.addressof(anchor))
    uc.mem_write(0x1000, code)
    uc.reg_write(UC_X86_REG_ECX, iterations)
    t = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(code))
    dt = time.perf_counter() - t
    return 4 * iterations / dt / 1e6


def raw_unicorn_hook_us(calls: int = HYPERCALLS) -> float:
    """Floor for a hypercall: a bare core looping on `int $0x82` with a Python hook
    that reads the six argument registers and writes EAX through the C API."""
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks
    from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc
    from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC, uclib
    from unicorn import x86_const as R
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_32).asm(
        f"mov edi, {calls}\nl: mov eax, 17\n int 0x82\n dec edi\n jnz l\n", 0x1000)[0])
    ram = mmap.mmap(-1, 1 << 20)
    anchor = ctypes.c_char.from_buffer(ram)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, 1 << 20, UC_PROT_ALL, ctypes.addressof(anchor))
    uc.mem_write(0x1000, code)
    regs = (R.UC_X86_REG_EAX, R.UC_X86_REG_EBX, R.UC_X86_REG_ECX, R.UC_X86_REG_EDX,
            R.UC_X86_REG_ESI, R.UC_X86_REG_EDI)
    ids = (ctypes.c_int * 6)(*regs)
    vals = (ctypes.c_uint32 * 6)()
    ptrs = (ctypes.c_void_p * 6)(*[ctypes.addressof(vals) + 4 * i for i in range(6)])
    out = ctypes.c_uint32(0x20000)
    h = uc._uch

    def hook(_h, _vector, _user):
        uclib.uc_reg_read_batch(h, ids, ptrs, 6)
        uclib.uc_reg_write(h, R.UC_X86_REG_EAX, ctypes.byref(out))
    cb = HOOK_INTR_CFUNC(hook)
    uc._Uc__do_hook_add(UC_HOOK_INTR, cb, 1, 0)
    t = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(code))
    return (time.perf_counter() - t) / calls * 1e6


def _machine(text: str, timeout: float = 300):
    with tempfile.TemporaryDirectory(prefix="smpxen-bench-") as d:
        cfg = write_config(Path(d), text)
        result = run_up("--config", cfg, "--quiet", report_dir=Path(d), timeout=timeout)
    if result.status != 0:
        raise RuntimeError(f"benchmark machine failed ({result.status}): {result.stderr.strip()}")
    return result.report


def _spin_config(cpus: int, iterations: int) -> str:
    doms = "".join(f"""
[[domain]]
name = "spin{i}"
kernel = "spin"
cpu = {i}
cmdline = "{iterations}"
""" for i in range(cpus))
    return f"[machine]\ncpus = {cpus}\n[clock]\nfreq_mhz = {FREQ_HZ // 1_000_000}\n{doms}"


def smpxen_mips(cpus: int, iterations: int = SPIN_ITERATIONS) -> float:
    """Aggregate guest MIPS of `cpus` spin guests, one per PCPU, each timed by its own
    rdtsc around its loop (the loops overlap, so per-guest rates add up)."""
    report = _machine(_spin_config(cpus, iterations))
    return sum(4 * iterations / _loop_seconds(d) / 1e6 for d in report["domains"])


def null_hypercall_us(calls: int = HYPERCALLS) -> float:
    report = _machine(f"""
[machine]
cpus = 1
[clock]
freq_mhz = {FREQ_HZ // 1_000_000}
[[domain]]
name = "hc"
kernel = "hypercall_loop"
cmdline = "{calls}"
""")
    return _loop_seconds(report["domains"][0]) / calls * 1e6


def boot_and_ipi(cpus: int = 4) -> dict:
    report = _machine(f"[machine]\ncpus = {cpus}\n[[domain]]\nkernel = 'hello'\ncount = 'per_cpu'\n")
    rtts = [p["ipi_rtt_us"] for p in report["pcpus"]]
    return {
        "boot_s": round(report["timings_s"]["boot_s"], 3),
        "spawn_to_online_s": round(report["timings_s"]["spawn_to_online_s"], 3),
        "ipi_rtt_us": {"median": round(statistics.median(r["median"] for r in rtts), 1),
                       "p99": round(max(r["p99"] for r in rtts), 1),
                       "samples": sum(r["samples"] for r in rtts)},
    }


def run(progress, quick: bool = False) -> dict:
    n = SPIN_ITERATIONS // (5 if quick else 1)
    calls = HYPERCALLS // (5 if quick else 1)
    repeat = 1 if quick else 3         # best of `repeat`, interleaved: the host is noisy
    out = {}
    raw, one, two = [], [], []
    for i in range(repeat):
        progress(f"raw Unicorn baseline (spin loop), round {i + 1}/{repeat}")
        raw.append(raw_unicorn_mips(n))
        progress(f"smpxen, 1 PCPU (spin guest), round {i + 1}/{repeat}")
        one.append(smpxen_mips(1, n))
        progress(f"smpxen, 2 PCPUs (two spin guests), round {i + 1}/{repeat}")
        two.append(smpxen_mips(2, n))
    out["raw_unicorn_mips"] = round(max(raw), 1)
    out["smpxen_mips_1cpu"] = round(max(one), 1)
    out["smpxen_mips_2cpu"] = round(max(two), 1)
    out["mips_samples"] = {"raw": [round(x) for x in raw], "1cpu": [round(x) for x in one],
                           "2cpu": [round(x) for x in two]}
    out["smpxen_1cpu_vs_raw"] = round(out["smpxen_mips_1cpu"] / out["raw_unicorn_mips"], 3)
    progress("null hypercall (xen_version loop) and its raw-hook floor")
    out["null_hypercall_us"] = round(null_hypercall_us(calls), 2)
    out["raw_unicorn_hook_us"] = round(raw_unicorn_hook_us(calls), 2)
    progress("boot time and IPI round trip, 4 PCPUs")
    out.update(boot_and_ipi(4))
    return out
