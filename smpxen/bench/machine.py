"""Benchmarks of the machine itself: emulation speed against raw Unicorn, the null
hypercall against the cheapest possible Python hook, IPI round trip, boot time.

Emulation speed is measured the same way on both sides: the mips_window guest's
chunk bytes, counted over a fixed window of the host's monotonic clock (system time
in the guest, rdtsc of that clock on bare Unicorn), after a warm-up that translates
the loop, over interleaved rounds (median, min, max); every chunk's checksum must
match on both sides. Two PCPUs are set beside two bare processes measuring the same
window at once."""
from __future__ import annotations

import ctypes
import mmap
import statistics
import struct
import tempfile
import time
from pathlib import Path

from smpxen.guests.assemble import assemble_guest, symbol_address
from smpxen.measure import summary
from smpxen.testing import console_values, run_up, write_config

HYPERCALLS = 200_000
FREQ_HZ = 2_000_000_000               # the bench configs' cycle-counter frequency


_guest_values = console_values


def _loop_seconds(domain: dict) -> float:
    return _guest_values(domain)["loop_kcycles"] * 1024 / FREQ_HZ


WINDOW_CHUNK = 1 << 20                # iterations of the spin loop per chunk (mips_window.s)
RETRIES = 3                           # a window missed because the host was busy is measured again


def _chunk_code() -> bytes:
    """The mips_window guest's chunk routine, byte for byte (through its ret)."""
    image = assemble_guest("mips_window")
    base = image.virt_base
    start, done = symbol_address("mips_window", "chunk"), symbol_address("mips_window", "chunk_done")
    return image.segments[0].data[start - base:done - base + 1]


def raw_window(start_ns: int, len_ns: int) -> dict:
    """The guest's chunk bytes on a bare Unicorn core (flat, no paging), measured the
    way the guest measures: chunks until a clock reaches start_ns (translating the
    loop), then chunks completed until start_ns + len_ns, the clock read with rdtsc
    between chunks. rdtsc reads host monotonic nanoseconds here (the guest's counter
    is the same host clock scaled). start_ns is absolute, so processes started
    together measure the same window."""
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks
    from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, UC_PROT_ALL, Uc
    from unicorn import x86_const as R
    from unicorn.unicorn_py3.arch.intel import HOOK_INSN_CPUID_CFUNC
    from unicorn.unicorn_py3.unicorn import uccallback
    chunk_va, data, stack = 0x10000, 0x20000, 0x30000
    end_ns = start_ns + len_ns
    driver = f"""
    mov esp, {stack}
    call {chunk_va}
    mov [{data}], edx
wait:
    call {chunk_va}
    rdtsc
    cmp edx, {start_ns >> 32}
    jb wait
    ja begin
    cmp eax, {start_ns & 0xFFFFFFFF}
    jb wait
begin:
    mov [{data + 4}], eax
    mov [{data + 8}], edx
count:
    call {chunk_va}
    inc dword ptr [{data + 12}]
    cmp edx, [{data}]
    je same
    inc dword ptr [{data + 16}]
same:
    rdtsc
    cmp edx, {end_ns >> 32}
    jb count
    ja done
    cmp eax, {end_ns & 0xFFFFFFFF}
    jb count
done:
    mov [{data + 20}], eax
    mov [{data + 24}], edx
"""
    code = bytes(Ks(KS_ARCH_X86, KS_MODE_32).asm(driver, 0x1000)[0])
    ram = mmap.mmap(-1, 1 << 20)
    anchor = ctypes.c_char.from_buffer(ram)
    # The first instance a process initialises runs this loop ~15 % slower than
    # later ones (docs/design.md, scripts/probes/first_instance.py): measure on a
    # second one, or the floor would sit below smpxen's own core.
    spare = Uc(UC_ARCH_X86, UC_MODE_32)
    spare.reg_read(R.UC_X86_REG_EAX)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, 1 << 20, UC_PROT_ALL, ctypes.addressof(anchor))
    uc.mem_write(0x1000, code)
    uc.mem_write(chunk_va, _chunk_code())

    @uccallback(uc, HOOK_INSN_CPUID_CFUNC)
    def rdtsc(_uc, _key):
        now = time.monotonic_ns()
        uc.reg_write(R.UC_X86_REG_EAX, now & 0xFFFFFFFF)
        uc.reg_write(R.UC_X86_REG_EDX, now >> 32)
        return 1
    uc._Uc__do_hook_add(UC_HOOK_INSN, rdtsc, 1, 0, R.UC_X86_INS_RDTSC)
    uc.emu_start(0x1000, 0x1000 + len(code))
    ref, b_lo, b_hi, chunks, bad, e_lo, e_hi = struct.unpack_from("<7I", ram, data)
    return {"chunks": chunks, "chunk_checksum": ref, "bad_chunks": bad,
            "begin_ns": b_lo | b_hi << 32, "end_ns": e_lo | e_hi << 32}


def _raw_window_proc(start_ns, len_ns, out):
    out.put(raw_window(start_ns, len_ns))


def raw_mips(processes: int, len_ms: int, lead_ms: int = 300) -> dict:
    """Aggregate MIPS of `processes` bare cores, each its own process, measuring the
    same window of host time (lead_ms from now, for len_ms)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    start_ns = time.monotonic_ns() + lead_ms * 1_000_000
    q = ctx.Queue()
    procs = [ctx.Process(target=_raw_window_proc, args=(start_ns, len_ms * 1_000_000, q))
             for _ in range(processes)]
    for p in procs:
        p.start()
    runs = [q.get(timeout=len_ms / 1000 + lead_ms / 1000 + 60) for _ in procs]
    for p in procs:
        p.join()
    _check_window(max(r["begin_ns"] - start_ns for r in runs) / 1e6, len_ms, f"{processes} raw process(es)")
    return _aggregate(runs, lambda r: (r["end_ns"] - r["begin_ns"]) / 1e9)


class HostTooBusy(RuntimeError):
    """A loop began measuring late: the window was not the one asked for."""


def _check_window(late_ms: float, len_ms: int, what: str) -> None:
    if late_ms > len_ms / 10:
        raise HostTooBusy(f"{what} began {late_ms:.0f} ms into a {len_ms} ms window")


def _aggregate(runs: list, seconds) -> dict:
    """MIPS summed over loops that measured the same window; their checksums."""
    mips = sum(r["chunks"] * WINDOW_CHUNK * 4 / seconds(r) / 1e6 for r in runs)
    return {"mips": mips, "checksums": {r["chunk_checksum"] & 0xFFFFFFFF for r in runs},
            "bad_chunks": sum(r["bad_chunks"] for r in runs)}


def raw_unicorn_hook_us(calls: int = HYPERCALLS) -> float:
    """Floor for a hypercall: a bare core looping on `int $0x82` with a Python hook
    that reads the six argument registers and writes EAX through the C API, called
    as smpxen's hook calls it (smpxen/pcpu/ucpatch.py raw_function)."""
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks
    from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc
    from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC
    from unicorn import x86_const as R
    from smpxen.pcpu.ucpatch import raw_function
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
    out_ref = ctypes.byref(out)
    h = uc._uch
    read_batch, write = raw_function("uc_reg_read_batch"), raw_function("uc_reg_write")

    def hook(_h, _vector, _user):
        read_batch(h, ids, ptrs, 6)
        write(h, R.UC_X86_REG_EAX, out_ref)
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


def _window_config(cpus: int, start_ms: int, len_ms: int) -> str:
    doms = "".join(f"""
[[domain]]
name = "w{i}"
kernel = "mips_window"
cpu = {i}
cmdline = "{start_ms} {len_ms}"
""" for i in range(cpus))
    return f"[machine]\ncpus = {cpus}\n[clock]\nfreq_mhz = {FREQ_HZ // 1_000_000}\n{doms}"


def smpxen_mips(cpus: int, len_ms: int, start_ms: int = 2000) -> dict:
    """Aggregate guest MIPS of `cpus` mips_window guests, one per PCPU, all counting
    chunks over the same window of system time (start_ms after boot, for len_ms)."""
    report = _machine(_window_config(cpus, start_ms, len_ms))
    runs = [_guest_values(d) for d in report["domains"]]
    _check_window(max(r["begin_us"] for r in runs) / 1000 - start_ms, len_ms, f"{cpus} PCPU(s)")
    return _aggregate(runs, lambda r: (r["end_us"] - r["begin_us"]) / 1e6)


def _spread(xs) -> dict:
    return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1),
            "max": round(max(xs), 1), "samples": [round(x, 1) for x in xs]}


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


def _zmq_echo(endpoint_in: str, endpoint_out: str, rounds: int) -> None:
    import zmq
    from smpxen.ipc import endpoints, messages as M
    ctx = zmq.Context(io_threads=1)
    inbox = endpoints.bind_inbox(ctx, endpoint_in)
    out = endpoints.connect_outbox(ctx, endpoint_out)
    for _ in range(rounds):
        msg = M.decode(inbox.recv())
        out.send(M.encode(M.IPI_REPLY, 1, msg[2], None))
    ctx.destroy(linger=1000)


def zmq_floor_rtt_us(rounds: int = 400, warmup: int = 50) -> dict:
    """The floor under an IPI round trip: two processes exchanging the same messages
    over the same sockets (PULL inbox, PUSH outbox, abstract ipc://@, msgpack) with
    nothing else to do; the same samples as the machine's boot-time pings."""
    import multiprocessing
    import secrets
    import zmq
    from smpxen.ipc import endpoints, messages as M
    tag = f"bench-{secrets.token_hex(4)}"
    here, there = endpoints.pcpu_endpoint(tag, 0), endpoints.pcpu_endpoint(tag, 1)
    ctx = zmq.Context(io_threads=1)
    inbox = endpoints.bind_inbox(ctx, here)
    peer = multiprocessing.get_context("fork").Process(target=_zmq_echo, args=(there, here, warmup + rounds))
    peer.start()
    out = endpoints.connect_outbox(ctx, there)
    samples = []
    try:
        for i in range(warmup + rounds):
            t = time.perf_counter_ns()
            out.send(M.encode(M.IPI_CALL, 0, i + 1, "ping", []))
            inbox.recv()
            if i >= warmup:
                samples.append((time.perf_counter_ns() - t) / 1000)
    finally:
        peer.join(timeout=10)
        ctx.destroy(linger=0)
    return summary(samples)


def boot_and_ipi(cpus: int = 4) -> dict:
    report = _machine(f"[machine]\ncpus = {cpus}\n[[domain]]\nkernel = 'hello'\ncount = 'per_cpu'\n")
    rtts = [p["ipi_rtt_us"] for p in report["pcpus"]]
    return {
        "boot_s": round(report["timings_s"]["boot_s"], 3),
        "spawn_to_online_s": round(report["timings_s"]["spawn_to_online_s"], 3),
        "ipi_rtt_us": {"median": round(statistics.median(r["median"] for r in rtts), 1),
                       "p99": round(max(r["p99"] for r in rtts), 1),
                       "samples": sum(r["samples"] for r in rtts)},
        # Where a round trip goes (medians over the PCPUs of each one's median).
        "ipi_rtt_steps_us": {step: round(statistics.median(p["ipi_rtt_steps_us"][step]
                                                           for p in report["pcpus"]), 1)
                             for step in report["pcpus"][0]["ipi_rtt_steps_us"]},
    }


def run(progress, quick: bool = False) -> dict:
    rounds = 3 if quick else 5
    len_ms = 500 if quick else 2000
    calls = HYPERCALLS // (5 if quick else 1)
    series = {"raw_1": [], "smpxen_1": [], "raw_2": [], "smpxen_2": []}
    checksums, bad = set(), 0
    for i in range(rounds):       # interleaved: the host's load drifts
        for key, what, fn in (("raw_1", "raw Unicorn, 1 process", lambda: raw_mips(1, len_ms)),
                              ("smpxen_1", "smpxen, 1 PCPU", lambda: smpxen_mips(1, len_ms)),
                              ("raw_2", "raw Unicorn, 2 processes", lambda: raw_mips(2, len_ms)),
                              ("smpxen_2", "smpxen, 2 PCPUs", lambda: smpxen_mips(2, len_ms))):
            progress(f"{what}: spin loop over a {len_ms} ms window, round {i + 1}/{rounds}")
            for attempt in range(RETRIES):
                try:
                    r = fn()
                    break
                except HostTooBusy as e:
                    if attempt == RETRIES - 1:
                        raise
                    progress(f"{e}; measuring again")
            series[key].append(r["mips"])
            checksums |= r["checksums"]
            bad += r["bad_chunks"]
    if len(checksums) != 1 or bad:
        raise RuntimeError(f"the loop's checksums differ: {sorted(checksums)}, {bad} bad chunks")
    out = {"mips_window_ms": len_ms, "mips_rounds": rounds, "mips_checksum_verified": True}
    out["raw_unicorn_mips"] = _spread(series["raw_1"])
    out["smpxen_mips_1cpu"] = _spread(series["smpxen_1"])
    out["raw_unicorn_mips_2proc"] = _spread(series["raw_2"])
    out["smpxen_mips_2cpu"] = _spread(series["smpxen_2"])
    out["smpxen_1cpu_vs_raw"] = round(out["smpxen_mips_1cpu"]["median"] / out["raw_unicorn_mips"]["median"], 3)
    out["smpxen_2cpu_vs_raw_2proc"] = round(out["smpxen_mips_2cpu"]["median"]
                                            / out["raw_unicorn_mips_2proc"]["median"], 3)
    progress("null hypercall (xen_version loop) and its raw-hook floor")
    out["null_hypercall_us"] = round(null_hypercall_us(calls), 2)
    out["raw_unicorn_hook_us"] = round(raw_unicorn_hook_us(calls), 2)
    progress("boot time and IPI round trip, 4 PCPUs")
    out.update(boot_and_ipi(4))
    progress("floor of the IPI round trip: two bare processes over the same sockets")
    out["zmq_floor_rtt_us"] = zmq_floor_rtt_us()
    out["ipi_rtt_vs_floor"] = round(out["ipi_rtt_us"]["median"] / out["zmq_floor_rtt_us"]["median"], 2)
    out["null_hypercall_vs_floor"] = round(out["null_hypercall_us"] / out["raw_unicorn_hook_us"], 2)
    return out
