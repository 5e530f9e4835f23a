"""`smpxen bench --group fuzz`: hypercall fuzzing at length. For each seed the
bundled fuzz guest makes 10^6 random hypercalls (see smpxen/guests/asm/fuzz.s) on
PCPU 0 of a 2-PCPU machine, beside bystanders that check their own work: an event
ping-pong over a loopback channel on the same PCPU, and mm_addrspace (its own page
tables, every read checked) and spin (a checksum) on PCPU 1. Then the first seed
again with the fuzzer as Domain-0, which may act on a victim domain (pause, move,
revoke and map its frames, bind its ports, ...) but never on the bystanders. Per seed: calls made,
seconds (the guest's own rdtsc around its loop), calls/s, the result histogram by
errno, the bystanders' results, and the problems found: hypervisor errors (a handler
that raised), a PCPU that died, a domain that did not shut down, a bystander with a
wrong result. There must be none; the group reports them rather than stopping, so
a finding comes with its seed. `--quick`: one seed, 10^5 calls. tests/machine/test_fuzz.py
runs the same machine with 10^5 calls."""
from __future__ import annotations

import ctypes
import mmap
import tempfile
from pathlib import Path

from smpxen.guests.assemble import assemble_guest, symbol_address
from smpxen.testing import RunResult, console_values, run_up, write_config

SEEDS = (1, 2, 3)
CALLS = 1_000_000
QUICK_CALLS = 100_000
FREQ_HZ = 2_000_000_000

# The fuzzer as a domU, or as Domain-0 acting on a victim it may hurt (an
# mm_addrspace domain, id 1) and never on the bystanders (ids 2, 3, 4).
FUZZ_DOMU = """
[[domain]]
name = "fuzz"
kernel = "fuzz"
memory_mib = 4
cpu = 0
cmdline = "seed={seed} calls={calls}"
"""
FUZZ_DOM0 = """
[dom0]
name = "fuzz"
kernel = "fuzz"
memory_mib = 4
cpu = 0
cmdline = "seed={seed} calls={calls} victim=1 protect=2,3,4"
[[domain]]
name = "victim"
kernel = "mm_addrspace"
cpu = 1
cmdline = "{loops}"
"""
MACHINE = """
[machine]
cpus = 2
memory_mib = 48
[clock]
freq_mhz = {freq_mhz}
{fuzzer}
[[domain]]
name = "pingpong"
kernel = "evtchn_pingpong"
cpu = 0
cmdline = "self={{domid}} peer={{domid}} count={pings}"
[[domain]]
name = "addrspace"
kernel = "mm_addrspace"
cpu = 1
cmdline = "{loops}"
[[domain]]
name = "spin"
kernel = "spin"
cpu = 1
cmdline = "{spin}"
"""

# mm_addrspace's checks when every one of them passes (as in tests/machine/test_mm_guests.py)
ADDRSPACE_OK = {"build_l1": 0, "build_l2": 0, "pin_l1": 0, "pin_l2": 0, "pinned_l1_raw_write": -22,
                "new_baseptr": 0, "newva_rw_ok": 1, "loop_errors": 0, "m2p_update": 0,
                "m2p_seen": 1, "baseptr_back": 0, "unpin_l2": 0, "unpin_l1": 0,
                "unpinned_l1_raw_write": 0}


def bystander_sizes(calls: int) -> dict:
    """Work for the bystanders in proportion to the fuzzing (10^5 calls: 5000 round
    trips, 3000 address-space loops, 2*10^7 spin iterations)."""
    return {"pings": max(100, calls // 20), "loops": max(100, calls // 33), "spin": max(10 ** 6, calls * 200)}


def machine_config(seed: int, calls: int, privileged: bool = False) -> str:
    sizes = bystander_sizes(calls)
    fuzzer = (FUZZ_DOM0 if privileged else FUZZ_DOMU).format(seed=seed, calls=calls, **sizes)
    return MACHINE.format(fuzzer=fuzzer, freq_mhz=FREQ_HZ // 1_000_000, **sizes)


def spin_checksum(iterations: int) -> int:
    """The spin guest's loop, byte for byte, on a bare Unicorn core: the checksum the
    guest must print, computed without smpxen's hypervisor."""
    from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, Uc
    from unicorn.x86_const import UC_X86_REG_ECX, UC_X86_REG_EDX
    image = assemble_guest("spin")
    start, end = symbol_address("spin", "spin_loop"), symbol_address("spin", "spin_done")
    code = image.segments[0].data[start - image.virt_base:end - image.virt_base]
    ram = mmap.mmap(-1, 1 << 16)
    anchor = ctypes.c_char.from_buffer(ram)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, 1 << 16, UC_PROT_ALL, ctypes.addressof(anchor))
    uc.mem_write(0x1000, b"\x31\xc0\x31\xd2" + code)      # xor eax, eax; xor edx, edx; the loop
    uc.reg_write(UC_X86_REG_ECX, iterations)
    uc.emu_start(0x1000, 0x1004 + len(code))
    checksum = uc.reg_read(UC_X86_REG_EDX)
    del uc, anchor
    ram.close()
    return checksum


def hypervisor_errors(report: dict) -> int:
    """Domains that ended because hypervisor code raised (smpxen/pcpu/containment.py error_detail)."""
    return sum("hypervisor error" in ((d["ended"] or {}).get("detail") or "") for d in report["domains"])


def problems(result: RunResult, seed: int, calls: int) -> list[str]:
    """Everything that says the fuzzer hurt something other than itself (and its
    victim), or that the run did not do what it should; [] for a clean run."""
    report = result.report
    if report is None:
        return [f"no report (exit status {result.status}): {result.stderr.strip()[-300:]}"]
    out = []
    victim_crashed = any(d["name"] == "victim" and (d["ended"] or {}).get("how") == "crashed"
                         for d in report["domains"])
    if result.status != 0 and not (result.status == 1 and victim_crashed):
        out.append(f"exit status {result.status}")
    if report.get("failure"):
        out.append(f"PCPU failure: {report['failure']}")
    out += [f"pcpu {p.get('index')} died" for p in report["pcpus"] if "missing" in p or not p.get("pid")]
    for d in report["domains"]:
        ended = d["ended"] or {}
        if "hypervisor error" in (ended.get("detail") or ""):
            out.append(f"hypervisor error in domain {d['name']}: {ended['detail']}")
        elif d["name"] == "victim" and ended:
            pass                        # Domain-0 may end it; it must not hang
        elif ended.get("how") != "shutdown":
            out.append(f"domain {d['name']} did not shut down: {ended or 'still running'}")
        if sum(d["hypercall_results"].values()) != d["hypercalls"]:
            out.append(f"domain {d['name']}: result histogram does not sum to its hypercalls")
        if "hypervisor_error" in d["hypercall_results"]:
            out.append(f"domain {d['name']}: {d['hypercall_results']['hypervisor_error']} hypervisor errors")
    names = {d["name"]: d for d in report["domains"]}
    fuzz = console_values(names["fuzz"])
    want = {"fuzz_seed": seed, "fuzz_calls_made": calls, "fuzz_intact": 1, "fuzz_done": 1}
    got = {k: fuzz.get(k) for k in want}
    if got != want:
        out.append(f"fuzz guest: {got}, expected {want}")
    sizes = bystander_sizes(calls)
    pp = console_values(names["pingpong"])
    if [pp.get(k) for k in ("received", "rounds", "lost", "duplicates")] != [sizes["pings"]] * 2 + [0, 0]:
        out.append(f"pingpong: {pp}")
    if console_values(names["addrspace"]) != ADDRSPACE_OK | {"loops": sizes["loops"]}:
        out.append(f"addrspace: {console_values(names['addrspace'])}")
    line = f"spin done, checksum {spin_checksum(sizes['spin'])} on pcpu 1"
    if line not in names["spin"]["console"]:
        out.append(f"spin: {names['spin']['console']}, expected {line!r}")
    return out


def bystander_results(result: RunResult, calls: int) -> dict:
    sizes = bystander_sizes(calls)
    pp = console_values(result.domain("pingpong"))
    addrspace = console_values(result.domain("addrspace"))
    spin = [line for line in result.domain("spin")["console"] if line.startswith("spin done")]
    return {
        "pingpong": {k: pp.get(k) for k in ("rounds", "received", "lost", "duplicates")},
        "addrspace": {"loops": addrspace.get("loops"), "loop_errors": addrspace.get("loop_errors"),
                      "all_checks_pass": addrspace == ADDRSPACE_OK | {"loops": sizes["loops"]}},
        "spin": {"iterations": sizes["spin"], "printed": spin[0] if spin else None,
                 "expected_checksum": spin_checksum(sizes["spin"])},
    }


def fuzz_run(seed: int, calls: int, report_dir: Path, timeout: float,
             privileged: bool = False) -> tuple[dict, RunResult]:
    """One machine: the fuzzer and its bystanders. -> (summary, run result)"""
    result = run_up("--config", write_config(report_dir, machine_config(seed, calls, privileged)),
                    "--quiet", report_dir=report_dir, timeout=timeout)
    summary = {"seed": seed, "calls": calls, "privileged": privileged,
               "problems": problems(result, seed, calls),
               "hypervisor_errors": hypervisor_errors(result.report) if result.report else None}
    if result.report is not None:
        fuzz = result.domain("fuzz")
        v = console_values(fuzz)
        seconds = v.get("fuzz_kcycles", 0) * 1024 / FREQ_HZ
        summary.update({
            "hypercalls": fuzz["hypercalls"],
            "seconds": round(seconds, 2),
            "calls_per_s": round(v.get("fuzz_calls_made", 0) / seconds) if seconds else None,
            "hypercall_results": dict(sorted(fuzz["hypercall_results"].items(), key=lambda kv: -kv[1])),
            "traps": v.get("fuzz_traps"), "pokes": v.get("fuzz_pokes"),
            "multicall_entries": v.get("fuzz_multicall_entries"), "hash": v.get("fuzz_hash"),
            "bystanders": bystander_results(result, calls),
        })
    if result.report is not None and privileged:
        victim = result.domain("victim")
        summary["victim"] = {"ended": victim["ended"], "result": console_values(victim)}
    return summary, result


def run(progress, quick: bool = False) -> dict:
    seeds, calls = ((SEEDS[0],), QUICK_CALLS) if quick else (SEEDS, CALLS)
    runs = []
    for seed, privileged in [(s, False) for s in seeds] + [(seeds[0], True)]:
        who = "Domain-0 with a victim" if privileged else "a domU"
        progress(f"fuzz: seed {seed}, {calls} hypercalls from {who}, beside bystanders on 2 PCPUs")
        with tempfile.TemporaryDirectory(prefix="smpxen-bench-fuzz-") as d:
            summary, _ = fuzz_run(seed, calls, Path(d), timeout=max(300, calls / 1000), privileged=privileged)
        runs.append(summary)
    seconds = sum(r.get("seconds", 0) for r in runs)
    made = sum(calls for r in runs if "hypercalls" in r)
    return {"fuzz": {
        "seeds": list(seeds),
        "calls": made,
        "seconds": round(seconds, 1),
        "calls_per_s": round(made / seconds) if seconds else None,
        "hypervisor_errors": sum(r["hypervisor_errors"] or 0 for r in runs),
        "problems": sum(len(r["problems"]) for r in runs),
        "runs": runs,
    }}
