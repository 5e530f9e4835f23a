"""Bad input stops at the door: `smpxen up` refuses what would fail later with exit
status 2 and one line naming the file (and the key), before it creates anything;
and a config the loader accepts is one the machine can build."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpxen.config import ConfigError, load_config
from smpxen.domain.builder import DOMAIN_EXTRA_FRAMES, DomainBuilder, DomainRequest
from smpxen.guests.assemble import assemble_guest
from smpxen.machine.machine import _assign_cpus
from smpxen.shm.boot import format_hypervisor_region
from smpxen.shm.domains import DomainTable
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from smpxen.testing import run_up, write_config
from smpxen.xen.arch_x86_32 import PAGE_SIZE

from test_elf import PF_X, make_elf

MIB = 1 << 20


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
def test_200_domains_refused_at_load(tmp_path, no_leaks):
    """Before: RuntimeError 'domain table full (128 domains)', a traceback, exit 1."""
    line = _refused(tmp_path, """
        [machine]
        memory_mib = 1024
        [[domain]]
        kernel = "hello"
        memory_mib = 1
        count = 200
    """)
    assert line.endswith("domain[0].count: makes 200 domains; "
                         "the hypervisor's domain table holds 128")


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


# --------------------------------------------------------------------------- #
# What loads, builds


def build_all(cfg) -> None:
    """What the machine does with a loaded config before it spawns a PCPU."""
    layout = Layout.compute(cfg.memory_bytes, cfg.cpus)
    ram = MachineRAM.create(cfg.memory_bytes)
    ram.unlink()
    try:
        frames = FrameTable(ram, layout, Locks(ram.fd))
        format_hypervisor_region(ram, layout, frames)
        builder = DomainBuilder(ram, layout, frames, DomainTable(ram, layout))
        free = frames.header.free_count
        for domid, spec in enumerate(_assign_cpus(cfg), start=0 if cfg.dom0 else 1):
            builder.build(DomainRequest(domid, spec.name, assemble_guest(spec.kernel),
                                        spec.memory_bytes, spec.cpu,
                                        spec.render_cmdline(domid), spec.privileged))
        # The loader's per-domain figure is what building really takes.
        used = sum(s.memory_bytes // PAGE_SIZE + DOMAIN_EXTRA_FRAMES for s in cfg.all_domains)
        assert free - frames.header.free_count == used
        del frames, builder
    finally:
        ram.close()


def _load(path):
    return load_config(path, bundled_guests={"hello"}, reserve_bytes=Layout.reserve_bytes,
                       domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * PAGE_SIZE)


@settings(max_examples=25, deadline=None)
@given(cpus=st.integers(1, 8), dom0=st.booleans(), slack_mib=st.integers(-1, 0),
       entries=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6)), min_size=1, max_size=2))
def test_what_loads_builds(tmp_path_factory, cpus, dom0, slack_mib, entries):
    """The smallest machine that fits loads and builds every domain; one MiB less
    is refused at load."""
    ndoms = dom0 + sum(n for _m, n in entries)
    need = (dom0 * MIB + sum(m * n * MIB for m, n in entries)
            + ndoms * DOMAIN_EXTRA_FRAMES * PAGE_SIZE)
    memory_mib = 8
    while (memory_mib * MIB) - Layout.reserve_bytes(cpus, memory_mib * MIB) < need:
        memory_mib += 1
    if memory_mib + slack_mib < 8:
        return
    text = f"[machine]\ncpus = {cpus}\nmemory_mib = {memory_mib + slack_mib}\n"
    if dom0:
        text += '[dom0]\nkernel = "hello"\nmemory_mib = 1\n'
    for i, (m, n) in enumerate(entries):
        text += (f'[[domain]]\nname = "e{i}-{{index}}"\nkernel = "hello"\n'
                 f'memory_mib = {m}\ncount = {n}\n')
    p = tmp_path_factory.getbasetemp() / "fits.toml"
    p.write_text(text)
    if slack_mib < 0:
        with pytest.raises(ConfigError, match="total domain memory"):
            _load(p)
    else:
        build_all(_load(p))


def test_exact_fit_on_a_large_machine(tmp_path):
    """1 CPU, 141 MiB: a 138 MiB domain fits with its two frames (140 MiB is refused
    above, end to end)."""
    p = tmp_path / "m.toml"
    p.write_text('[machine]\ncpus = 1\nmemory_mib = 141\n'
                 '[[domain]]\nkernel = "hello"\nmemory_mib = 138\n')
    build_all(_load(p))
    p.write_text(p.read_text().replace("141", "140"))
    with pytest.raises(ConfigError, match="plus 8 KiB"):
        _load(p)
