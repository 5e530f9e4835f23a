"""Local descriptor tables end to end: the mm_ldt guest on 2 PCPUs, staying put and
moved between them every 10 ms."""
from __future__ import annotations

import pytest

from smpxen.testing import console_values, run_up, write_config

GUEST = """
[machine]
cpus = 2
memory_mib = 32
[[domain]]
name = "ldt"
kernel = "mm_ldt"
cmdline = "{loops}"
cpu = 0
[[domain]]
name = "bystander"
kernel = "hello"
cmdline = "still here"
cpu = 1
"""
EXPECTED = {
    "set_trap_table": 0, "ldt_page_ro": 0, "set_ldt": 0, "ldt_accessed_preset": 1,
    "ldt_base_applies": 1, "flat_read_differs": 1, "ldt_page1_lazy": 1,
    "ldt_page1_accessed_preset": 1, "es_selector": 0x0D,
    "ldt_map_rw": -22, "ldt_map_rw_alias": -22, "ldt_raw_write": -22,
    "ldt_update_ring0": -22, "ldt_update_good": 0, "ldt_update_seen": 1,
    "set_ldt_ring0_page": 0, "ring0_desc_page_faults": 1, "ring0_desc_fault_at_ldt": 1,
    "ring0_desc_es_unchanged": 0x0821, "ring0_desc_page_rw": 0, "set_ldt_again": 0,
    "map_shared_info": 0, "ldt_loop_errors": 0, "ldtr_errors": 0,
    "stack_switch": 0, "ldt_reset_for_ring3": 0, "ring3_trap_ds": 0x100F,
    "set_ldt_off": 0, "ldt_off_gp": 1, "ldt_off_gp_code": 0x0C, "ldt_off_ldtr": 0,
    "ldt_off_page_rw": 0,
}


def ldt_selector(cpu):
    return (256 + 9 + 2 * cpu) << 3          # Xen 2.0's __LDT(cpu) << 3


def check_guest(result, loops):
    assert result.report is not None, result.stderr
    d = result.domain("ldt")
    assert d["ended"]["how"] == "shutdown" and d["ended"]["code"] == 0, d["ended"]
    assert result.domain("bystander")["console"][-1].startswith("still here")
    v = console_values(d)
    assert {k: v.get(k) for k in EXPECTED} == EXPECTED
    assert v["ldt_loops"] == loops
    assert v["ldtr_checks"] > loops // 2, "LDTR was compared against the PCPU in most rounds"
    assert v["ldtr_selector"] == ldt_selector(v["pcpu"])
    # Page 0 is mapped after every SET_LDT, page 1 lazily at its first load.
    maps = sum(p["mm"]["ldt_shadow_maps"] for p in result.report["pcpus"])
    assert maps >= 2 * ((loops + 63) // 64)
    return v


@pytest.mark.timeout(60)
def test_ldt_guest(tmp_path, no_leaks):
    loops = 2000
    cfg = write_config(tmp_path, GUEST.format(loops=loops))
    result = run_up("--config", cfg, report_dir=tmp_path)
    assert result.status == 0, result.stderr
    v = check_guest(result, loops)
    assert v["pcpu_mask"] == 1


@pytest.mark.timeout(60)
def test_ldt_guest_migrating(tmp_path, no_leaks):
    """Moved between the PCPUs every 10 ms: the LDT shadow (machine RAM) goes with
    the domain, LDTR is reloaded with the new PCPU's selector at every switch-in."""
    loops = 20000
    cfg = write_config(tmp_path, GUEST.format(loops=loops))
    result = run_up("--config", cfg, "--migrate", "ldt:10", report_dir=tmp_path)
    assert result.status == 0, result.stderr
    v = check_guest(result, loops)
    assert result.report["migrations"]["ldt"] >= 2
    assert v["pcpu_mask"] == 3
    assert result.domain("ldt")["pcpus_ran_on"] == [0, 1]
