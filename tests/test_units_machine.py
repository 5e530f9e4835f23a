"""Unit tests of the machine's pieces, without processes."""
import io
import struct

import pytest
from hypothesis import given, settings, strategies as st

from smpxen.domain.builder import DomainBuilder, DomainRequest, plan_layout, BuildError
from smpxen.guests.assemble import assemble_guest
from smpxen.hv.table import do_hypercall, implemented
from smpxen.hv.guestmem import GuestFault, GuestMemory
from smpxen.ipc import messages as M
from smpxen.machine.console import ConsoleMux
from smpxen.shm.boot import format_hypervisor_region
from smpxen.shm.domains import DomainTable
from smpxen.shm.frametable import (FrameTable, OWNER_NONE, OWNER_XEN, PGT_l1_page_table,
                                   PGT_l2_page_table, PGT_pinned, PGT_type_mask, PGT_writable_page)
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from smpxen.xen import errno
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.structs import SharedInfo, StartInfo
from smpxen.xen.xen import CONSOLEIO_write


@pytest.fixture
def machine_ram():
    ram = MachineRAM.create(16 << 20)
    ram.unlink()
    layout = Layout.compute(16 << 20, 2)
    ft = FrameTable(ram, layout, Locks(ram.fd))
    format_hypervisor_region(ram, layout, ft)
    yield ram, layout, ft
    del ft
    ram.close()


def test_layout_reserve_grows_with_ram_and_cpus():
    small = Layout.compute(16 << 20, 1)
    big = Layout.compute(256 << 20, 64)
    assert small.hv_frames < big.hv_frames < big.nr_frames
    assert Layout.reserve_bytes(2, 64 << 20) == Layout.compute(64 << 20, 2).hv_frames * 4096
    with pytest.raises(ValueError):
        Layout.compute(1 << 20, 4)


def test_free_pool_alloc_and_free(machine_ram):
    ram, layout, ft = machine_ram
    free = ft.header.free_count
    assert free == layout.nr_frames - layout.hv_frames
    assert all(ft.frames[m].owner == OWNER_XEN for m in range(layout.hv_frames))
    got = ft.alloc(7, 10)
    assert len(set(got)) == 10 and all(m >= layout.hv_frames for m in got)
    assert all(ft.frames[m].owner == 7 for m in got)
    assert ft.header.free_count == free - 10
    ft.free(got)
    assert ft.header.free_count == free
    assert all(ft.frames[m].owner == OWNER_NONE for m in got)


def build(machine_ram, name="hello", mem=4 << 20, domid=1):
    ram, layout, ft = machine_ram
    dt = DomainTable(ram, layout)
    b = DomainBuilder(ram, layout, ft, dt)
    info = b.build(DomainRequest(domid, f"d{domid}", assemble_guest(name), mem, 0, "cmd {x}", False))
    return ram, layout, ft, info


def test_builder_start_of_day(machine_ram):
    ram, layout, ft, info = build(machine_ram)
    mem = GuestMemory(ram, layout.nr_frames)
    mem.cr3 = info.pt_base_mfn << 12
    si = StartInfo.from_buffer_copy(mem.read(info.start_info_va, 320))
    assert si.nr_pages == 1024
    assert si.shared_info == info.shared_info_mfn << 12
    assert bytes(si.cmd_line).rstrip(b"\0") == b"cmd {x}"
    assert si.flags == 0
    # The kernel image is where the ELF/asm said, and executable from VIRT_BASE.
    image = assemble_guest("hello")
    assert mem.read(image.virt_base, 64) == image.segments[0].data[:64]
    # pfn->mfn list agrees with the M2P table.
    mfns = struct.unpack(f"<{si.nr_pages}I", mem.read(si.mfn_list, 4 * si.nr_pages))
    assert all(ft.m2p[m] == pfn for pfn, m in enumerate(mfns))
    assert all(ft.frames[m].owner == 1 for m in mfns)
    # Page tables are mapped read-only; the L2 is pinned; L1s typed with back-pointers.
    with pytest.raises(GuestFault):
        mem.write(si.pt_base, b"x")
    l2 = ft.frames[info.pt_base_mfn]
    assert l2.type_info & PGT_type_mask == PGT_l2_page_table and l2.type_info & PGT_pinned
    l1_mfn = struct.unpack_from("<I", ram.mem, (info.pt_base_mfn << 12) + (0xC0000000 >> 22) * 4)[0] >> 12
    assert ft.frames[l1_mfn].type_info & PGT_type_mask == PGT_l1_page_table
    assert ft.frames[mfns[0]].type_info & PGT_type_mask == PGT_writable_page
    # shared_info: events masked at start of day
    shared = SharedInfo.from_buffer_copy(ram.read(info.shared_info_mfn << 12, 344))
    assert shared.vcpu_data[0].evtchn_upcall_mask == 1


def test_builder_refuses_too_little_memory(machine_ram):
    with pytest.raises(BuildError, match="too small"):
        build(machine_ram, mem=16 << 10)


def test_builder_refuses_more_than_free(machine_ram):
    with pytest.raises(BuildError, match="not enough free machine memory"):
        build(machine_ram, mem=15 << 20)


@given(st.integers(1, 4096), st.integers(0x100000, 0xF0000000 // 4096 * 4096))
def test_plan_layout_is_ordered_and_covered(nr_pages, kernel_size):
    from smpxen.guests.image import KernelImage, Segment
    image = KernelImage("k", [Segment(0xC0000000, b"", min(kernel_size, 0x3000000))], 0xC0000000, 0xC0000000)
    p = plan_layout(image, nr_pages)
    assert image.vend <= p["v_mfn_list"] < p["v_pt"] < p["v_start_info"] < p["v_stack"] < p["v_stack_end"]
    assert p["v_end"] % (4 << 20) == 0 and p["v_end"] >= p["v_stack_end"] + (512 << 10)
    assert p["nr_l1"] * (4 << 20) >= p["v_end"] - (image.virt_base & ~((4 << 20) - 1))


class FakeHv:
    """The HvContext surface the machine-issue handlers use."""
    def __init__(self, mem, privileged=True, for_all=True):
        self.mem = mem
        self.console_io_for_all = for_all
        self.written = []
        self.events = []

        class V:
            pass
        self.current = V()
        self.current.domid = 1
        self.current.privileged = privileged
        self.current.info = type("I", (), {"vm_assist": 0})()
        self.current.shared = SharedInfo()

    def console_write(self, data):
        self.written.append(data)

    def yield_current(self):
        self.events.append("yield")

    def block_current(self):
        self.events.append("block")

    def shutdown_current(self, reason):
        self.events.append(("shutdown", reason))


def test_dispatch_console_clips_and_faults(machine_ram):
    ram, layout, ft, info = build(machine_ram)
    mem = GuestMemory(ram, layout.nr_frames)
    mem.cr3 = info.pt_base_mfn << 12
    hv = FakeHv(mem)
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_write, 0xFFFFFFFF, 0xC0000000, 0, 0) == 4095
    assert len(hv.written[0]) == 4095
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_write, 8, 0x1000, 0, 0) == -errno.EFAULT
    hv_strict = FakeHv(mem, privileged=False, for_all=False)
    assert do_hypercall(hv_strict, Hypercall.console_io, CONSOLEIO_write, 1, 0xC0000000, 0, 0) == -errno.EPERM
    assert do_hypercall(hv, 30, 0, 0, 0, 0, 0) == -errno.ENOSYS


def test_sched_op_block_clears_upcall_mask(machine_ram):
    hv = FakeHv(None)
    hv.current.shared.vcpu_data[0].evtchn_upcall_mask = 1
    assert do_hypercall(hv, Hypercall.sched_op, 1, 0, 0, 0, 0) == 0
    assert hv.current.shared.vcpu_data[0].evtchn_upcall_mask == 0
    assert hv.events == ["block"]
    assert do_hypercall(hv, Hypercall.sched_op, 2 | (2 << 8), 0, 0, 0, 0) == 0
    assert hv.events[-1] == ("shutdown", 2)


def test_implemented_hypercalls_listed():
    assert {Hypercall.console_io, Hypercall.xen_version, Hypercall.sched_op, Hypercall.multicall, Hypercall.vm_assist} <= set(implemented())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 1023), st.booleans(), st.booleans()),
                max_size=40),
       st.integers(0, 0xFFFFFFFF), st.integers(1, 9000), st.booleans())
def test_guestmem_matches_a_reference_walk(mappings, va, n, write):
    """GuestMemory agrees with a straightforward model of two-level paging,
    including faults for absent, read-only and hypervisor-area addresses."""
    frames = 64
    ram = MachineRAM(*_anon(frames))
    pd = 1
    table = {}
    ram.write(pd << 12, bytes(4096))
    l1 = 2
    ram.write(l1 << 12, bytes(4096))
    struct.pack_into("<I", ram.mem, (pd << 12) + (va >> 22) * 4, (l1 << 12) | 3)
    for slot, frame, present, rw in mappings:
        mfn = 3 + frame % (frames - 3)
        pte = (mfn << 12) | (1 if present else 0) | (2 if rw else 0)
        struct.pack_into("<I", ram.mem, (l1 << 12) + slot * 4, pte)
        table[slot] = (mfn, present, rw)
    mem = GuestMemory(ram, frames)
    mem.cr3 = pd << 12

    def expect(addr):
        if addr >= 0xFC000000 or (addr >> 22) != (va >> 22):
            return None
        mfn, present, rw = table.get((addr >> 12) & 1023, (0, False, False))
        if not present or (write and not rw):
            return None
        return (mfn << 12) | (addr & 0xFFF)
    addrs = range(va, min(va + n, 1 << 32))
    ok = va + n <= 0xFC000000 and all(expect(a) is not None for a in addrs[::4096]) \
        and expect(min(va + n, 1 << 32) - 1) is not None
    try:
        if write:
            mem.write(va, b"\xAB" * n)
        else:
            mem.read(va, n)
        got = True
    except GuestFault:
        got = False
    assert got == ok
    ram.close()


def _anon(frames):
    import os
    fd = os.memfd_create("smpxen-test")
    os.ftruncate(fd, frames * 4096)
    return fd, frames * 4096


def test_console_mux_assembles_lines():
    out = io.StringIO()
    mux = ConsoleMux({1: "a", 2: "b"}, out)
    mux.feed(1, b"hel")
    mux.feed(2, b"x\ny")
    mux.feed(1, b"lo\r\nworld")
    mux.flush()
    assert out.getvalue() == "[d2 b] x\n[d1 a] hello\n[d1 a] world\n[d2 b] y\n"
    assert {d: list(lines) for d, lines in mux.lines.items()} == {1: ["hello", "world"], 2: ["x", "y"]}


def test_console_mux_bounds_lines_and_notes_drops(monkeypatch):
    from smpxen.machine import console
    monkeypatch.setattr(console, "KEPT_LINES", 3)
    out = io.StringIO()
    mux = ConsoleMux({1: "a"}, out)
    mux.feed(1, b"x" * (console.MAX_LINE + 5))       # no newline: cut at MAX_LINE
    mux.feed(1, b"\nhalf")
    mux.dropped(1, 4096)                            # the partial line goes out first
    mux.feed(1, b"1\n2\n")
    assert list(mux.lines[1]) == ["[smpxen: 4096 bytes of console output dropped: over the domain's bound]",
                                  "1", "2"]
    assert mux.lines_dropped[1] == 3 and mux.bytes_dropped[1] == 4096
    assert out.getvalue().count("\n") == 6


def test_console_budget_is_a_token_bucket():
    from smpxen.pcpu.console import BURST_BYTES, RATE_BYTES_PER_S, ConsoleBudget
    b = ConsoleBudget()
    assert b.admit(BURST_BYTES, 0.0) == (True, 0)
    assert b.admit(100, 0.0) == (False, 0)           # empty: dropped and counted
    assert b.admit(200, 0.0) == (False, 0)
    assert b.admit(100, 300 / RATE_BYTES_PER_S) == (True, 300)   # refilled: told of the loss
    assert b.admit(1, 10.0) == (True, 0)
    b.admit(BURST_BYTES + 1, 10.0)                  # never fits: always dropped
    assert b.take_dropped() == BURST_BYTES + 1 and b.take_dropped() == 0


def test_messages_round_trip():
    data = M.encode(M.CONSOLE, 3, 7, b"\x00bytes")
    assert M.decode(data) == [M.CONSOLE, 3, 7, b"\x00bytes"]
    assert M.decode(M.encode(M.STATS, 0, {1: {"a": 2}})) == [M.STATS, 0, {1: {"a": 2}}]


@pytest.mark.parametrize("name", sorted(__import__("smpxen.guests.assemble", fromlist=["x"]).bundled_guest_names()))
def test_every_bundled_guest_assembles(name):
    image = assemble_guest(name)
    assert image.entry == image.virt_base and len(image.segments[0].data) > 0


def test_readme_hypercall_table_matches_the_hypervisor():
    """The README lists every hypercall; exactly the unimplemented ones say -ENOSYS."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = {int(m[1]): (m[2], m[3]) for m in re.finditer(r"^\| (\d+) \| (\w+) \| (.*) \|$", readme, re.M)}
    done = set(implemented())
    for number in Hypercall:
        name = number.name
        assert rows[number][0] == name
        assert rows[number][1].startswith("**-ENOSYS**") == (number not in done), name


def test_ram_larger_than_dev_shm_is_refused_before_it_exists(monkeypatch):
    import os as _os
    from smpxen.shm import ram as ram_module

    class Full:
        f_bavail, f_frsize = 10, 4096
    monkeypatch.setattr(ram_module.os, "statvfs", lambda _path: Full())
    before = set(_os.listdir(ram_module.SHM_DIR))
    with pytest.raises(ram_module.OutOfSharedMemory, match="needs 16 MiB"):
        ram_module.MachineRAM.create(16 << 20)
    assert set(_os.listdir(ram_module.SHM_DIR)) == before
