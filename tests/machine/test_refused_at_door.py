"""Bad input stops at the door: `smpxen up` refuses what would fail later with exit
status 2 and one line naming the file (and the key), before it creates anything."""
from __future__ import annotations

import pytest

from smpxen.guests.assemble import assemble_guest
from smpxen.testing import run_up, write_config
from support.elf import PF_X, make_elf


def _refused(tmp_path, text, *args):
    cfg = write_config(tmp_path, text)
    result = run_up("--config", cfg, "--quiet", *args, report_dir=tmp_path, timeout=60)
    lines = result.stderr.splitlines()
    assert result.status == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"smpxen: {cfg}: "), lines[0]
    assert result.stdout == "" and result.report is None     # it never got as far as a report
    return lines[0]


@pytest.mark.timeout(60)
def test_300_domains_refused_at_load(tmp_path, no_leaks):
    """Before: RuntimeError 'domain table full (N domains)', a traceback, exit 1."""
    line = _refused(tmp_path, """
        [machine]
        memory_mib = 1024
        [[domain]]
        kernel = "hello"
        memory_mib = 1
        count = 300
    """)
    assert line.endswith("domain[0].count: makes 300 domains; "
                         "the hypervisor's domain table holds 256")


@pytest.mark.timeout(60)
def test_counter_beyond_20ghz_refused_at_load(tmp_path, no_leaks):
    line = _refused(tmp_path, """
        [clock]
        freq_mhz = 50000.0
        [[domain]]
        kernel = "hello"
    """)
    assert "clock.freq_mhz: must be between 2.0 and 20000.0, got 50000.0" in line


@pytest.mark.timeout(60)
def test_memory_beyond_the_free_pool_refused_at_load(tmp_path, no_leaks):
    """138 MiB fits the 138 MiB left of a 1-CPU 140 MiB machine, its shared_info and
    PERDOMAIN frames do not. Before: the builder found out after creating RAM."""
    line = _refused(tmp_path, """
        [machine]
        cpus = 1
        memory_mib = 140
        [[domain]]
        kernel = "hello"
        memory_mib = 138
    """)
    assert "domain: total domain memory 138 MiB plus 8 KiB the hypervisor takes" in line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["entry_in_gap", "too_big", "truncated"])
def test_hostile_kernel_refused_before_anything_starts(tmp_path, no_leaks, kind):
    code = assemble_guest("hello").segments[0].data
    if kind == "entry_in_gap":
        data = make_elf(segments=[(0xC0000000, code, len(code), PF_X),
                                  (0xC0400000, b"\x90", 0x1000, PF_X)], entry=0xC0200000)
    elif kind == "too_big":
        data = make_elf(segments=[(0xC0000000, code, 64 << 20, PF_X)])
    else:
        data = make_elf(segments=[(0xC0000000, code, len(code), PF_X)])[:100]
    (tmp_path / "k.elf").write_bytes(data)
    line = _refused(tmp_path, """
        [[domain]]
        name = "victim"
        kernel = "k.elf"
        memory_mib = 4
    """)
    assert f"domain 'victim': kernel: {tmp_path / 'k.elf'}: " in line
    assert {"entry_in_gap": "is in no loaded segment", "too_big": "4096 KiB is too small",
            "truncated": "truncated file"}[kind] in line
