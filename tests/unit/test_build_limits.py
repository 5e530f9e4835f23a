"""A config the loader accepts is one the machine can build: the free pool, the
domain table and the hypervisor reserve, checked against the builder itself."""
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
from smpxen.xen.arch_x86_32 import PAGE_SIZE

MIB = 1 << 20


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
    """1 CPU: a 138 MiB domain fits with its two frames in the smallest machine
    whose free pool holds them (built end to end), and one MiB less is refused."""
    need = 138 * MIB + 2 * 4096
    memory_mib = 139
    while memory_mib * MIB - Layout.reserve_bytes(1, memory_mib * MIB) < need:
        memory_mib += 1
    p = tmp_path / "m.toml"
    p.write_text(f'[machine]\ncpus = 1\nmemory_mib = {memory_mib}\n'
                 '[[domain]]\nkernel = "hello"\nmemory_mib = 138\n')
    build_all(_load(p))
    p.write_text(p.read_text().replace(f"memory_mib = {memory_mib}\n", f"memory_mib = {memory_mib - 1}\n"))
    with pytest.raises(ConfigError, match="plus 8 KiB"):
        _load(p)
