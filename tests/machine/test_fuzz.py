"""Hypercall fuzzing: the bundled fuzz guest makes 10^5 seeded random hypercalls
beside bystanders doing real work on 2 PCPUs; the machine, the PCPUs and the
bystanders' results are unharmed, nothing in the hypervisor raises, and the report's
per-domain result histogram accounts for every hypercall. Also the histogram itself,
the reproducibility of a seed, and regression checks for what the fuzzer found."""
import pytest

from smpxen.bench.fuzz import bystander_sizes, fuzz_run
from smpxen.testing import console_values, run_up, write_config

SEED = 1
CALLS = 100_000


@pytest.mark.timeout(90)
def test_fuzzing_beside_bystanders(tmp_path, no_leaks):
    # The machine and every check of the benchmark (smpxen/bench/fuzz.py): exit
    # status 0, no PCPU died, no domain ended with a hypervisor error, each domain's
    # result histogram sums to its hypercalls, the fuzz guest made its calls and its
    # code and tables are intact, the bystanders' results are exact (the event
    # ping-pong's counts, mm_addrspace's checks, spin's checksum from bare Unicorn).
    summary, result = fuzz_run(SEED, CALLS, tmp_path, timeout=80)
    assert summary["problems"] == [], summary["problems"]
    assert summary["hypervisor_errors"] == 0
    report = result.report
    assert result.status == 0 and report["failure"] is None
    assert all(p["pid"] and "missing" not in p for p in report["pcpus"])
    fuzz = result.domain("fuzz")
    results, numbers = fuzz["hypercall_results"], fuzz["hypercalls_by_number"]
    assert fuzz["hypercalls"] >= CALLS
    assert sum(results.values()) == fuzz["hypercalls"] == sum(numbers.values())
    assert "hypervisor_error" not in results
    # it reached the refusals and the successes of many hypercalls
    for name in ("0", "positive", "-EPERM", "-EFAULT", "-EINVAL", "-ENOSYS", "-ESRCH"):
        assert results.get(name, 0) > 100, (name, results)
    assert len(numbers) == 32               # every number 0..31, implemented or not
    assert console_values(fuzz)["fuzz_traps"] > 0       # its pokes reached the trap paths
    pp = console_values(result.domain("pingpong"))
    assert pp["received"] == bystander_sizes(CALLS)["pings"] and pp["lost"] == 0


PRIVILEGED_CALLS = 50_000


@pytest.mark.timeout(90)
def test_privileged_fuzzing_hurts_only_its_victim(tmp_path, no_leaks):
    # Domain-0 fuzzing: dom0_op, foreign mappings, revocations, event channels and
    # update_va_mapping_otherdomain aimed at a victim domain (and at itself and at
    # domains that do not exist); the bystanders are exactly as above, the victim
    # ends (it may crash: Domain-0 may do that), nothing in the hypervisor raises.
    summary, result = fuzz_run(SEED, PRIVILEGED_CALLS, tmp_path, timeout=80, privileged=True)
    assert summary["problems"] == [], summary["problems"]
    assert summary["hypervisor_errors"] == 0
    assert result.domain("fuzz")["privileged"] and result.domain("victim")["ended"] is not None
    results = summary["hypercall_results"]
    assert results.get("-EACCES", 0) > 0        # dom0_op got past the privilege check


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
    assert console_values(d) == {
        "set_trap_table": 0,
        # an invalid opcode is a #UD for the guest's handler, EIP at the instruction
        "ud_handled": 1, "ud_eip_at_instruction": 1,
        # a trap-table selector whose descriptor cannot be loaded (an LDT entry on an
        # unmapped page; it crashed the PCPU): the failsafe callback, with that CS
        "set_ldt": 0, "set_callbacks": 0, "bad_cs_trap_table": 0,
        "bad_cs_failsafe": 1, "bad_cs_failsafe_frame_cs": 0xCB55,
        # a #GP right after bytes that read `int 0x0d`: a fault, error code and all
        "gp_trap_table": 0, "gp_frame_error_code": 0, "gp_frame_eip_at_hlt": 1}
    # the result histogram, exactly (see fuzz_regress.s): errnos by name, positive
    # values together; a multicall entry's result is not a hypercall of its own
    assert d["hypercall_results"] == {"0": 7, "positive": 12, "-ENOSYS": 2, "-EFAULT": 1,
                                      "-EINVAL": 1, "-EPERM": 1}
    assert d["hypercalls_by_number"] == {"set_trap_table": 3, "console_io": 12, "xen_version": 2,
                                         "hypercall_23": 1, "vm_assist": 1, "dom0_op": 1,
                                         "multicall": 1, "sched_op": 1, "mmu_update": 1,
                                         "set_callbacks": 1}
    assert d["hypercalls"] == 24
