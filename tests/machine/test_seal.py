"""The seal on whole machines: the seal_scan guest tries every page of the hypervisor
area on every PCPU while other domains run (so the ring-0 stacks hold their frames)."""
from __future__ import annotations

import pytest
from test_selftest_traps import EXPECTED as SELFTEST_TRAPS_EXPECTED

from smpxen.shm.layout import Layout
from smpxen.testing import console_values, run_up, write_config
from smpxen.xen import arch_x86_32 as A

# ---- whole machines ----------------------------------------------------------------------
SCAN_PAGES = (1 << 32) - A.MACH2PHYS_VIRT_START >> 12          # 16384
MEMORY_MIB = 64
SCAN_MACHINE = """
[machine]
cpus = {cpus}
memory_mib = {memory}
[dom0]
kernel = "hello"
cpu = 0
[[domain]]
name = "scan{{index}}"
kernel = "seal_scan"
count = "per_cpu"
cmdline = "tables={{index}}"
[[domain]]
name = "traps{{index}}"
kernel = "selftest_traps"
count = "per_cpu"
"""


def expected_scan(cpus: int, own_tables: bool) -> dict:
    """Exact counts: every M2P page readable, nothing above it, nothing writable;
    the sealed pages (present, so not a #PF) are #GP(0) from ring 1: Xen's GDT, the
    trampoline, one ring-0 stack per PCPU, and with its own tables the domain's GDT
    frame and LDT page in its PERDOMAIN area. Everything else is not mapped."""
    layout = Layout.compute(MEMORY_MIB << 20, cpus)
    m2p = layout.m2p_frames
    sealed = 2 + cpus + (2 if own_tables else 0)
    out = {"own_tables": int(own_tables), "nr_pages": 1024}
    if own_tables:
        out["ldt_load"] = 1
    for ring in ("ring1", "ring3"):
        gp = sealed if ring == "ring1" else 0
        out.update({
            f"{ring}_readable_m2p": m2p, f"{ring}_readable_hv": 0, f"{ring}_writable": 0,
            f"{ring}_read_gp": gp, f"{ring}_read_pf": SCAN_PAGES - m2p - gp,
            f"{ring}_write_gp": 0, f"{ring}_write_pf": SCAN_PAGES,
            f"{ring}_gp_errcode_nonzero": 0, f"{ring}_cr2_wrong": 0, f"{ring}_scanned": SCAN_PAGES,
            f"{ring}_m2p_checked": 1024, f"{ring}_m2p_wrong": 0,
            # the LDT shadow page's faults are reported at the guest's own LDT address:
            # the write from ring 1, the read and the write from ring 3
            f"{ring}_cr2_ldt": (1 if ring == "ring1" else 2) if own_tables else 0,
        })
    out["done"] = 1
    return out


@pytest.mark.timeout(240)
def test_every_pcpu_sees_a_sealed_hypervisor_area(tmp_path, no_leaks):
    cpus = 2
    cfg = write_config(tmp_path, SCAN_MACHINE.format(cpus=cpus, memory=MEMORY_MIB))
    result = run_up("--config", cfg, report_dir=tmp_path, timeout=200)
    assert result.status == 0, result.stderr
    pcpus = set()
    for i in range(cpus):
        d = result.domain(f"scan{i}")
        got = console_values(d)
        pcpus.add(got.pop("pcpu"))
        assert got == expected_scan(cpus, own_tables=i % 2 == 1), d["console"]
        assert d["ended"]["detail"] == "poweroff"
        traps = result.domain(f"traps{i}")
        assert console_values(traps) == SELFTEST_TRAPS_EXPECTED
    assert pcpus == set(range(cpus))
