"""The selftest_traps guest: trap hypercalls, bounced faults and a ring-3 program."""
import pytest

from smpxen.testing import run_up, write_config

R1CS, R1DS, R3CS, R3DS = 0x0819, 0x0821, 0x082B, 0x0833
# ---- the bundled trap self-test on a real machine ---------------------------------------
TRAPS = """
[machine]
cpus = 1
memory_mib = 32
[[domain]]
name = "traps"
kernel = "selftest_traps"
cpu = 0
"""
EXPECTED = {
    "set_trap_table_xencs": -1, "set_trap_table": 0, "set_trap_table_unmapped": -14,
    "stack_switch_ring0": -1, "stack_switch": 0, "set_callbacks_xencs": -1,
    "set_callbacks_rpl0": -1, "set_callbacks": 0, "set_fast_trap_0x30": -1,
    "set_fast_trap_ifflag": -1, "set_fast_trap_0x80": 0, "set_debugreg_dr0_hv": -1,
    "set_debugreg_dr0": 0, "get_debugreg_dr0": 4096, "set_debugreg_dr7_gd": -1,
    "set_debugreg_dr7_io": -1, "set_debugreg_dr7": 0, "get_debugreg_dr7": 0x401,
    "get_debugreg_dr6": 0xFFFF0FF0 - (1 << 32), "set_debugreg_dr4": -22, "get_debugreg_dr8": -22,
    "gp_hlt_code": 0, "gp_cr3_code": 0, "gp_ring1_count": 3, "int40_dpl0_gp_code": 0x40 * 8 + 2,
    "int41_count": 1, "int3_count": 1, "nm_count": 1, "fpu_after_nm": 2, "de_count": 1,
    "user_ring": 3, "syscall_fast": 42, "syscall_trap": 100, "user_pf_value": 4242,
    "user_ring_after_pf": 3, "user_gp_count": 3, "user_int82_gp": 1, "pf_count": 1,
    "pf_error_code": 4, "pf_cr2": 0xC0380000 - (1 << 32), "pf_from_cs": R3CS,
}


@pytest.mark.timeout(60)
def test_selftest_traps_guest(tmp_path, no_leaks):
    result = run_up("--config", write_config(tmp_path, TRAPS), report_dir=tmp_path, timeout=60)
    assert result.status == 0, result.stderr
    d = result.domain("traps")
    got = dict(line.split("=") for line in d["console"] if "=" in line)
    assert {k: int(v) for k, v in got.items()} == EXPECTED
    pcpu = result.report["pcpus"][0]
    assert d["ended"]["how"] == "shutdown"
    assert pcpu.get("traps", 0) >= 8
