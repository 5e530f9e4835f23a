"""Hypercall fuzzing: the bundled fuzz guest makes 10^5 seeded random hypercalls
beside bystanders doing real work on 2 PCPUs; the machine, the PCPUs and the
bystanders' results are unharmed, nothing in the hypervisor raises, and the report's
per-domain result histogram accounts for every hypercall. Also the histogram itself,
the reproducibility of a seed, and regression checks for what the fuzzer found."""
import ctypes
import mmap

import pytest

from smpxen.guests.assemble import assemble_guest, symbol_address
from smpxen.testing import console_values, run_up, write_config

SEED = 1
CALLS = 100_000
PINGS = 5000
ADDRSPACE_LOOPS = 3000
SPIN = 20_000_000

FUZZ_MACHINE = """
[machine]
cpus = 2
memory_mib = 48
[[domain]]
name = "fuzz"
kernel = "fuzz"
memory_mib = 4
cpu = 0
cmdline = "seed={seed} calls={calls}"
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

# mm_addrspace's checks when every one of them passes (as in test_mm_guests.py)
ADDRSPACE_OK = {"build_l1": 0, "build_l2": 0, "pin_l1": 0, "pin_l2": 0, "pinned_l1_raw_write": -22,
                "new_baseptr": 0, "newva_rw_ok": 1, "loop_errors": 0, "m2p_update": 0,
                "m2p_seen": 1, "baseptr_back": 0, "unpin_l2": 0, "unpin_l1": 0,
                "unpinned_l1_raw_write": 0}


def spin_checksum(iterations: int) -> int:
    """The spin guest's loop, byte for byte, on a bare Unicorn core: the checksum it
    must print (computed without smpxen's hypervisor)."""
    from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, Uc
    from unicorn.x86_const import UC_X86_REG_ECX, UC_X86_REG_EDX
    image = assemble_guest("spin")
    start, end = symbol_address("spin", "spin_loop"), symbol_address("spin", "spin_done")
    code = image.segments[0].data[start - image.virt_base:end - image.virt_base]
    ram = mmap.mmap(-1, 1 << 16)
    anchor = ctypes.c_char.from_buffer(ram)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, 1 << 16, UC_PROT_ALL, ctypes.addressof(anchor))
    uc.mem_write(0x1000, b"\x31\xc0\x31\xd2" + code)      # xor eax, eax; xor edx, edx; loop
    uc.reg_write(UC_X86_REG_ECX, iterations)
    uc.emu_start(0x1000, 0x1004 + len(code))
    checksum = uc.reg_read(UC_X86_REG_EDX)
    del uc, anchor
    ram.close()
    return checksum


def hypervisor_errors(report) -> list:
    return [d["name"] for d in report["domains"]
            if d["ended"] and "hypervisor error" in (d["ended"]["detail"] or "")]


@pytest.mark.timeout(90)
def test_fuzzing_beside_bystanders(tmp_path, no_leaks):
    cfg = write_config(tmp_path, FUZZ_MACHINE.format(seed=SEED, calls=CALLS, pings=PINGS,
                                                      loops=ADDRSPACE_LOOPS, spin=SPIN))
    result = run_up("--config", cfg, "--quiet", report_dir=tmp_path, timeout=80)
    report = result.report
    assert result.status == 0, result.stderr
    assert report["failure"] is None
    assert all(p.get("pid") and "missing" not in p for p in report["pcpus"])    # no PCPU died
    assert hypervisor_errors(report) == []
    assert all(d["ended"]["how"] == "shutdown" for d in report["domains"])

    fuzz = result.domain("fuzz")
    v = console_values(fuzz)
    assert v["fuzz_seed"] == SEED
    assert v["fuzz_calls_made"] == CALLS
    assert v["fuzz_intact"] == 1            # its code, pfn->mfn list and start_info
    assert v["fuzz_done"] == 1
    results, numbers = fuzz["hypercall_results"], fuzz["hypercalls_by_number"]
    assert fuzz["hypercalls"] >= CALLS
    assert sum(results.values()) == fuzz["hypercalls"]
    assert sum(numbers.values()) == fuzz["hypercalls"]
    assert "hypervisor_error" not in results
    # it reached the refusals and the successes of many hypercalls
    for name in ("0", "positive", "-EPERM", "-EFAULT", "-EINVAL", "-ENOSYS", "-ESRCH"):
        assert results.get(name, 0) > 100, (name, results)
    assert len(numbers) == 32               # every number 0..31, implemented or not

    pp = console_values(result.domain("pingpong"))
    assert (pp["received"], pp["rounds"], pp["lost"], pp["duplicates"]) == (PINGS, PINGS, 0, 0)
    assert console_values(result.domain("addrspace")) == ADDRSPACE_OK | {"loops": ADDRSPACE_LOOPS}
    assert f"spin done, checksum {spin_checksum(SPIN)} on pcpu 1" in result.domain("spin")["console"]
    for d in report["domains"]:
        assert sum(d["hypercall_results"].values()) == d["hypercalls"], d["name"]


ONE_FUZZER = """
[machine]
cpus = 1
memory_mib = 16
[[domain]]
name = "fuzz"
kernel = "fuzz"
memory_mib = 4
cmdline = "seed={seed} calls=3000"
"""


def _fuzz_run(tmp_path, seed: int) -> dict:
    d = tmp_path / f"seed{seed}-{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    result = run_up("--config", write_config(d, ONE_FUZZER.format(seed=seed)), "--quiet",
                    report_dir=d, timeout=40)
    assert result.status == 0, result.stderr
    fuzz = result.domain("fuzz")
    v = console_values(fuzz)
    # preempted calls are made again: those repeats are the only difference timing makes
    v["hypercalls_not_repeated"] = fuzz["hypercalls"] - fuzz["hypercall_results"].get("continuation", 0)
    return {k: v[k] for k in ("fuzz_seed", "fuzz_hash", "fuzz_iterations", "fuzz_calls_made", "fuzz_traps",
                              "fuzz_pokes", "fuzz_frames_gained", "hypercalls_not_repeated")}


@pytest.mark.timeout(90)
def test_a_seed_reproduces_its_run(tmp_path, no_leaks):
    first, again, other = _fuzz_run(tmp_path, 7), _fuzz_run(tmp_path, 7), _fuzz_run(tmp_path, 8)
    assert first == again
    assert first["fuzz_hash"] != other["fuzz_hash"]


REGRESS = """
[machine]
cpus = 1
[[domain]]
name = "regress"
kernel = "fuzz_regress"
"""


@pytest.mark.timeout(60)
def test_fuzz_findings_stay_fixed_and_results_are_counted(tmp_path, no_leaks):
    result = run_up("--config", write_config(tmp_path, REGRESS), "--quiet", report_dir=tmp_path)
    assert result.status == 0, result.stderr
    d = result.domain("regress")
    # an invalid opcode is a #UD for the guest's handler, EIP at the instruction
    assert console_values(d) == {"set_trap_table": 0, "ud_handled": 1, "ud_eip_at_instruction": 1}
    # the result histogram, exactly (see fuzz_regress.s): errnos by name, positive
    # values together; a multicall entry's result is not a hypercall of its own
    assert d["hypercall_results"] == {"0": 3, "positive": 4, "-ENOSYS": 2, "-EFAULT": 1,
                                      "-EINVAL": 1, "-EPERM": 1}
    assert d["hypercalls_by_number"] == {"set_trap_table": 1, "console_io": 4, "xen_version": 2,
                                         "hypercall_23": 1, "vm_assist": 1, "dom0_op": 1,
                                         "multicall": 1, "sched_op": 1}
    assert d["hypercalls"] == 12
