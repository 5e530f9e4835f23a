"""The Domain-0 control plane's pieces in this process: domain teardown's memory and
event-channel sides, Xen's domain-id rotation, the dom0_op handlers against a fake
hypervisor interface, full_execution_context_t, privcmd continuations, and the
machine-side request builder."""
from __future__ import annotations

import collections
import ctypes
import struct
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpxen.control.privcmd import ARG_BASE, ARG_BYTES, Request
from smpxen.hv.event_channel import ECS_FREE, ECS_UNBOUND, EvtchnTables
from smpxen.hv.guestmem import GuestMemory
from smpxen.hv.table import do_hypercall
from smpxen.pcpu import domain as domain_life
from smpxen.pcpu import vcpuctx
from smpxen.pcpu.bounce import ThreadState
from smpxen.sched.flags import DFM_CONSTRUCTED
from smpxen.shm.domains import DS_RUNNING, DomainTable
from smpxen.shm.frametable import OWNER_NONE, PGT_l1_page_table, PGT_l2_page_table, PGT_pinned
from smpxen.xen import arch_x86_32 as A, dom0_ops as D, errno
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.structs import ECF_I387_VALID, FullExecutionContext
from smpxen.xen.xen import DOMID_SELF, EVTCHNSTAT_unbound
from support.mm import DOM_A, DOM_B, NA, NB, P, RW, apply_op, count, op


# ---- teardown: memory --------------------------------------------------------------------
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=40))
def test_relinquish_returns_every_frame_whatever_the_tables_held(machine, ops):
    """Random page-table states of DOM_A (pins, linear maps, tables mapping tables):
    once the references outside the domain's tables are dropped, relinquishing
    frees every frame of it; DOM_B is untouched."""
    m = machine.fresh()
    bases, held = [], []
    for o in ops:
        apply_op(m, o, bases, held)
    free_before = m.ft.header.free_count
    b_state = [(m.ft.frames[f].count_info, m.ft.frames[f].type_info) for f in m.frames[DOM_B]]
    for mfn in held:
        m.mm.put_page_and_type(mfn)
    for mfn in bases[1:]:
        m.mm.put_page_and_type(mfn)
    owned = len(m.mm.domain_frames(DOM_A))
    assert m.mm.relinquish_memory(DOM_A, bases[0] if bases else 0) == []
    assert m.mm.domain_frames(DOM_A) == []
    assert m.ft.header.free_count == free_before + owned
    for f in m.frames[DOM_A]:
        fi = m.ft.frames[f]
        assert (fi.owner, fi.count_info, fi.type_info, fi.flags) == (OWNER_NONE, 0, 0, 0)
    assert [(m.ft.frames[f].count_info, m.ft.frames[f].type_info) for f in m.frames[DOM_B]] == b_state
    assert m.dt.find(DOM_A).tot_pages == 0


def test_relinquish_reports_frames_another_domain_still_maps(m):
    """A frame of the dying domain mapped by another domain's L1 stays until that
    mapping goes (the caller revokes it: smpxen/pcpu/domain.py)."""
    a, b_l1 = m.frames[DOM_A][0], m.frames[DOM_B][0]
    m.put(b_l1, 3, (a << 12) | P)
    assert m.mm.get_page(a, DOM_A)                    # the reference B's entry stands for
    assert m.mm.relinquish_memory(DOM_A, 0) == [a]
    assert m.ft.frames[a].owner == DOM_A and count(m, a) == 1
    m.mm.put_page(a)                                  # B's mapping goes
    assert m.ft.frames[a].owner == OWNER_NONE and m.mm.domain_frames(DOM_A) == []


def test_domain_frames_finds_exactly_a_domains_frames(m):
    assert m.mm.domain_frames(DOM_A) == sorted(m.frames[DOM_A])
    assert m.mm.domain_frames(DOM_B) == sorted(m.frames[DOM_B])
    assert m.mm.domain_frames(DOM_A + 0x100) == []      # same low byte, another domain


# ---- teardown: event channels ------------------------------------------------------------
def test_destroying_a_domain_closes_its_channels_and_peers_see_them_unbound(machine_ram):
    ram, layout, ft = machine_ram
    dt = DomainTable(ram, layout)
    for domid in (1, 2, 3):
        dt.allocate(domid).state = DS_RUNNING
    t = EvtchnTables(ram.mem, layout.evtchn_mfn << 12, dt)
    rc, p1 = t.alloc_unbound(1, False, 2)
    rc, q1, q2 = t.bind_interdomain(2, False, DOMID_SELF, 0, 1, p1)
    assert rc == 0
    rc, lp1, lp2 = t.bind_interdomain(1, False, DOMID_SELF, 0, 1, 0)     # loopback
    assert rc == 0
    rc, virq_port = t.bind_virq(1, 1)
    rc, waiting = t.alloc_unbound(3, False, 1)                         # domain 3 awaits domain 1
    assert t.destroy_domain(1) == 4
    assert all(e.state == ECS_FREE for e in t.ports(1))
    assert dt.find(1).virq_to_evtchn[1] == 0
    assert t.status(2, False, DOMID_SELF, q1) == (0, EVTCHNSTAT_unbound, 1, 0)   # awaiting the dead domain
    assert t.ports(2)[q1].state == ECS_UNBOUND
    assert t.ports(3)[waiting].state == ECS_UNBOUND and t.ports(3)[waiting].remote_dom == 1
    assert t.destroy_domain(1) == 0


# ---- domain ids -----------------------------------------------------------------------------
def test_domain_ids_rotate_through_the_low_range_as_xen_does(machine_ram):
    ram, layout, ft = machine_ram
    dt = DomainTable(ram, layout)
    pcpu = types.SimpleNamespace(frames=ft, domains=dt)
    dt.allocate(0).state = DS_RUNNING
    got = []
    for _ in range(3):
        d = domain_life.allocate_domid(pcpu)
        dt.allocate(d).state = DS_RUNNING
        got.append(d)
    assert got == [1, 2, 3]
    dt.free(2)
    assert domain_life.allocate_domid(pcpu) == 4          # from the last one handed out on
    ft.header.next_domid = 100                            # the end of the range: wrap to 1..
    assert domain_life.allocate_domid(pcpu) == 2
    for d in range(1, 101):
        if dt.find(d) is None:
            dt.allocate(d).state = DS_RUNNING
    assert domain_life.allocate_domid(pcpu) == 101 and ft.header.top_domid == 102


# ---- dom0_op handlers ------------------------------------------------------------------------
class FakeHv:
    """The parts of smpxen/hv/iface.py the Domain-0 handlers use, over the memory
    machine of tests/support/mm.py; the caller is DOM_A, privileged."""

    def __init__(self, m):
        self.mm = m.mm
        self.domains = m.dt
        self.mem = GuestMemory(m.ram, m.layout.nr_frames)
        self.current = types.SimpleNamespace(domid=DOM_A, privileged=True)
        self.calls = []
        self.console = b"(XEN) one\n(XEN) two\n"

    def __getattr__(self, name):          # everything else: recorded, answers 0
        def record(*args):
            self.calls.append((name, *args))
            return 0
        return record

    def read_console(self, clear):
        out = self.console
        if clear:
            self.console = b""
        return out


def _guest_mapping(m):
    """DOM_A's frames 0..: frame 0 an L2 mapping frame 1 (an L1) at slot 0, which maps
    frames 2.. at 0x0..; so addresses 0x2000 + are writable guest memory."""
    l2, l1 = m.frames[DOM_A][0], m.frames[DOM_A][1]
    for i, f in enumerate(m.frames[DOM_A][2:]):
        m.put(l1, i, (f << 12) | P | RW)
    m.put(l2, 0, (l1 << 12) | P | RW)
    return l2


def _op(hv, cmd, union) -> int:
    op = D.Dom0Op(cmd=cmd, interface_version=D.DOM0_INTERFACE_VERSION)
    ctypes.memmove(op.u, bytes(union), ctypes.sizeof(union))
    hv.mem.write(0x0, bytes(op))
    return do_hypercall(hv, Hypercall.dom0_op, 0x0, 0, 0, 0, 0)


def _out(hv, kind):
    return kind.from_buffer_copy(hv.mem.read(D.UNION_OFFSET, ctypes.sizeof(kind)))


@pytest.fixture
def hv(m):
    h = FakeHv(m)
    h.mem.cr3 = _guest_mapping(m) << 12
    return h


def test_destroy_and_build_refusals(m, hv):
    assert _op(hv, D.DOM0_DESTROYDOMAIN, D.DomainOnly(domain=DOM_A)) == -errno.EINVAL   # itself
    assert _op(hv, D.DOM0_DESTROYDOMAIN, D.DomainOnly(domain=77)) == -errno.ESRCH
    assert _op(hv, D.DOM0_DESTROYDOMAIN, D.DomainOnly(domain=DOM_B)) == 0
    assert ("destroy_domain", DOM_B) in hv.calls
    assert _op(hv, D.DOM0_BUILDDOMAIN, D.BuildDomain(domain=77, ctxt=0x1000)) == -errno.EINVAL
    m.dt.find(DOM_B).flags |= DFM_CONSTRUCTED
    assert _op(hv, D.DOM0_BUILDDOMAIN, D.BuildDomain(domain=DOM_B, ctxt=0x1000)) == -errno.EINVAL
    assert _op(hv, D.DOM0_UNPAUSEDOMAIN, D.DomainOnly(domain=DOM_A)) == -errno.EINVAL  # not built
    assert _op(hv, D.DOM0_SETDOMAININITIALMEM, D.SetDomainMem(domain=DOM_B, memkb=64)) == -errno.EINVAL
    m.dt.find(DOM_B).flags &= ~DFM_CONSTRUCTED
    assert _op(hv, D.DOM0_BUILDDOMAIN, D.BuildDomain(domain=DOM_B, ctxt=0xFC000000)) == -errno.EFAULT
    assert _op(hv, D.DOM0_SETDOMAINMAXMEM, D.SetDomainMem(domain=DOM_B, memkb=4097)) == 0
    assert m.dt.find(DOM_B).max_pages == 1025                  # kilobytes, rounded up to pages


def test_getmemlist_and_frame_info(m, hv):
    buf = 0x3000
    assert _op(hv, D.DOM0_GETMEMLIST, D.GetMemList(domain=DOM_B, max_pfns=3, buffer=buf)) == 0
    g = _out(hv, D.GetMemList)
    assert g.num_pfns == 3 and list(struct.unpack("<3I", hv.mem.read(buf, 12))) == sorted(m.frames[DOM_B])[:3]
    # a list running into an unmapped page: what fits is written, -EFAULT
    end = (NA - 2) * 4096                    # the last mapped byte + 1
    assert _op(hv, D.DOM0_GETMEMLIST, D.GetMemList(domain=DOM_B, max_pfns=NB, buffer=end - 8)) == -errno.EFAULT
    assert _out(hv, D.GetMemList).num_pfns == 2
    assert _op(hv, D.DOM0_GETMEMLIST, D.GetMemList(domain=99, max_pfns=1, buffer=buf)) == -errno.EINVAL
    # the L2 of DOM_A, pinned, and its L1
    l2, l1 = m.frames[DOM_A][0], m.frames[DOM_A][1]
    assert m.mm.pin_table(l2, PGT_l2_page_table, DOM_A)
    assert _op(hv, D.DOM0_GETPAGEFRAMEINFO, D.GetPageFrameInfo(pfn=l1, domain=DOM_A)) == 0
    assert _out(hv, D.GetPageFrameInfo).type == D.L1TAB
    assert _op(hv, D.DOM0_GETPAGEFRAMEINFO, D.GetPageFrameInfo(pfn=l1, domain=DOM_B)) == -errno.EINVAL
    frames = [l2, l1, m.frames[DOM_B][0], 0xFFFFFF]
    hv.mem.write(buf, struct.pack("<4I", *frames))
    assert _op(hv, D.DOM0_GETPAGEFRAMEINFO2, D.GetPageFrameInfo2(domain=DOM_A, num=4, array=buf)) == 0
    got = struct.unpack("<4I", hv.mem.read(buf, 16))
    assert got == (l2 | D.L2TAB | D.LPINTAB, l1 | D.L1TAB, frames[2] | D.XTAB, (0xFFFFFF | D.XTAB) & 0xFFFFFFFF)
    assert _op(hv, D.DOM0_GETPAGEFRAMEINFO2, D.GetPageFrameInfo2(domain=DOM_A, num=1025, array=buf)) == -errno.E2BIG
    assert m.ft.frames[l2].type_info & PGT_pinned and m.ft.frames[l1].type_info >> 29 == PGT_l1_page_table >> 29


def test_readconsole_copies_then_clears(hv):
    buf = 0x3000
    assert _op(hv, D.DOM0_READCONSOLE, D.ReadConsole(str=buf, count=8, cmd=0)) == 8
    assert hv.mem.read(buf, 8) == b"(XEN) on"
    assert _op(hv, D.DOM0_READCONSOLE, D.ReadConsole(str=buf, count=100, cmd=D.CONSOLE_RING_CLEAR)) == 20
    assert _op(hv, D.DOM0_READCONSOLE, D.ReadConsole(str=buf, count=100, cmd=0)) == 0


def test_unprivileged_callers_get_eperm(hv):
    hv.current.privileged = False
    for cmd in (D.DOM0_CREATEDOMAIN, D.DOM0_DESTROYDOMAIN, D.DOM0_BUILDDOMAIN, D.DOM0_GETMEMLIST,
                D.DOM0_READCONSOLE, D.DOM0_MSR):
        assert _op(hv, cmd, D.DomainOnly(domain=DOM_B)) == -errno.EPERM
    assert hv.calls == []


def test_every_dom0_op_is_in_the_readme_and_exactly_the_unmodelled_ones_are_enosys(hv):
    """Each DOM0_* command of smpxen/xen/dom0_ops.py has a row in the README's
    Domain-0 table; the rows saying -ENOSYS are exactly the commands without a
    handler, and those answer -ENOSYS; another interface version is -EACCES."""
    import re
    from pathlib import Path
    from smpxen.hv.dom0_op import OPS
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Domain-0\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            names, text = line.split(" | ", 2)[:2]
            rows.update({name: text for name in re.findall(r"`([A-Z0-9_]+)`", names)})
    commands = {k[len("DOM0_"):]: v for k, v in vars(D).items()
                if k.startswith("DOM0_") and k != "DOM0_INTERFACE_VERSION"}
    assert set(rows) == set(commands)
    refused = {name for name, text in rows.items() if text.startswith("**-ENOSYS**")}
    assert refused == {name for name, cmd in commands.items() if cmd not in OPS} == {"DEBUG", "PCIDEV_ACCESS",
                                                                                   "SHADOW_CONTROL"}
    for name in refused:
        assert _op(hv, commands[name], D.DomainOnly(domain=DOM_A)) == -errno.ENOSYS
    op = D.Dom0Op(cmd=D.DOM0_GETDOMAININFO, interface_version=D.DOM0_INTERFACE_VERSION + 1)
    hv.mem.write(0x0, bytes(op))
    assert do_hypercall(hv, Hypercall.dom0_op, 0x0, 0, 0, 0, 0) == -errno.EACCES
    assert {call[0] for call in hv.calls} == {"trace"}      # nothing done but the trace points


# ---- full_execution_context_t ------------------------------------------------------------------
def test_fxsave_image_round_trips_through_a_core():
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    image = bytearray(512)[:256]
    struct.pack_into("<HHB", image, 0, 0x37F, 0x0041, 0b00000011)
    struct.pack_into("<I", image, 24, 0x1F80)
    struct.pack_into("<QH", image, 32, 0x8000000000000000, 0x3FFF)      # ST0 = 1.0
    image[160 + 16:176 + 16] = bytes(range(16))                            # XMM1
    vcpuctx.load_fxsave_image(uc, bytes(image))
    out = vcpuctx.fxsave_image(uc)
    assert out[:6] == bytes(image[:6]) and out[24:28] == bytes(image[24:28])
    assert out[32:42] == bytes(image[32:42]) and out[176:192] == bytes(range(16))


def _fake_pcpu(m, domid=DOM_B):
    info = m.dt.find(domid)
    v = types.SimpleNamespace(domid=domid, info=info, context=None, initial=None, thread=ThreadState(),
                              ldt_base=0, ldt_ents=0)
    paging = types.SimpleNamespace(mm=m.mm, run_deferred=lambda: None)
    return types.SimpleNamespace(paging=paging, current=None), v


def _context(l2: int) -> FullExecutionContext:
    c = FullExecutionContext()
    r = c.cpu_ctxt
    r.cs, r.ss, r.ds, r.eip, r.esp, r.eflags = A.FLAT_RING1_CS, A.FLAT_RING1_DS, A.FLAT_RING1_DS, 0xC0001000, 0xC0400000, 0x202
    c.pt_base = l2 << 12
    c.trap_ctxt[14].cs, c.trap_ctxt[14].address = A.FLAT_RING1_CS, 0xC0002000
    c.event_callback_cs, c.event_callback_eip = A.FLAT_RING1_CS, 0xC0003000
    c.guestos_ss, c.guestos_esp = A.FLAT_RING1_DS, 0xC0400000
    c.debugreg[7] = 0x1                       # DR7 L0: Xen forces bit 10
    c.fast_trap_idx = 0x80
    c.trap_ctxt[0x80].cs, c.trap_ctxt[0x80].address, c.trap_ctxt[0x80].flags = A.FLAT_RING1_CS, 0xC0004000, 3
    c.ldt_base, c.ldt_ents = 0xC0100000, 16
    c.flags = ECF_I387_VALID
    c.fpu_ctxt[0], c.fpu_ctxt[1] = 0x7F, 0x03
    return c


def test_build_sets_a_domain_up_and_reports_it_back(m):
    pcpu, v = _fake_pcpu(m)
    l2 = m.frames[DOM_B][0]
    c = _context(l2)
    assert vcpuctx.build(pcpu, v, bytes(c)) == 0
    assert v.info.flags & DFM_CONSTRUCTED and v.info.pt_base_mfn == l2
    assert m.ft.frames[l2].type_info >> 29 == PGT_l2_page_table >> 29 and count(m, l2) == 2
    t = v.thread
    assert t.trap(14) == (0, A.FLAT_RING1_CS, 0xC0002000) and t.fast_trap == 0x80
    assert t.event_address == 0xC0003000 and t.debugreg[7] == 0x401 and t.kernel_sp == 0xC0400000
    back = FullExecutionContext.from_buffer_copy(vcpuctx.get_context(pcpu, v))
    for name in ("eip", "esp", "cs", "ss", "eflags"):
        assert getattr(back.cpu_ctxt, name) == getattr(c.cpu_ctxt, name), name
    assert (back.pt_base, back.ldt_base, back.ldt_ents, back.fast_trap_idx) == (l2 << 12, 0xC0100000, 16, 0x80)
    assert back.flags == ECF_I387_VALID and bytes(back.fpu_ctxt) == bytes(c.fpu_ctxt)
    assert vcpuctx.build(pcpu, v, bytes(c)) == -errno.EINVAL          # built once only


@pytest.mark.parametrize("spoil,rc", [
    (lambda c: setattr(c.cpu_ctxt, "cs", 0x0808), -errno.EINVAL),           # ring 0
    (lambda c: setattr(c.trap_ctxt[3], "address", 1) or setattr(c.trap_ctxt[3], "cs", 0x0808), -errno.EINVAL),
    (lambda c: setattr(c, "failsafe_callback_eip", 1), -errno.EINVAL),      # cs 0
    (lambda c: setattr(c, "fast_trap_idx", 0x30), -errno.EPERM),
    (lambda c: setattr(c, "ldt_base", 0xC0100800), -errno.EINVAL),
    (lambda c: setattr(c, "gdt_ents", 10), -errno.EINVAL),
    (lambda c: setattr(c, "pt_base", 0), -errno.EINVAL),                    # not the domain's L2
])
def test_build_refuses_a_bad_context_and_keeps_nothing(m, spoil, rc):
    pcpu, v = _fake_pcpu(m)
    l2 = m.frames[DOM_B][0]
    c = _context(l2)
    spoil(c)
    before = (count(m, l2), m.ft.frames[l2].type_info)
    assert vcpuctx.build(pcpu, v, bytes(c)) == rc
    assert not v.info.flags & DFM_CONSTRUCTED and v.initial is None
    assert (count(m, l2), m.ft.frames[l2].type_info) == before


# ---- privcmd -------------------------------------------------------------------------------------
def test_privcmd_continuation_resumes_where_the_hypercall_stopped(monkeypatch):
    """A hypercall of Domain-0's user space that makes a continuation leaves the
    registers alone: its remaining arguments replace the step's, and the request
    goes on from there the next time."""
    from smpxen.pcpu import privcmd as P_
    from smpxen.pcpu.hvctx import HvContext
    sent = []
    v = types.SimpleNamespace(domid=0, ended=None, hypercalls=0, hypercalls_by_nr=[0] * 32,
                              hypercall_results=collections.Counter(), detail="")
    pcpu = types.SimpleNamespace(counts={"hypercalls": 0}, index=0, current=v, vcpus={0: v}, mem=None)
    pcpu.mailbox = types.SimpleNamespace(send_machine=lambda *a: sent.append(a))
    pcpu.preempt_pending = lambda: False
    hv = HvContext.__new__(HvContext)
    hv.multicall_entry, hv.privcmd, hv._pcpu = None, None, pcpu
    pcpu.hv = hv
    calls = []

    def fake_hypercall(h, nr, a1, a2, a3, a4, a5):
        calls.append((nr, a1, a2))
        if a2 > 100:
            return h.create_continuation(nr, a1 + 100, a2 - 100)
        return 0
    monkeypatch.setattr(P_, "do_hypercall", fake_hypercall)
    runner = P_.Privcmd(pcpu)
    job = P_.Job(-1, 7, [["h", int(Hypercall.mmu_update), 0x1000, 250, 0, 0, 0], ["h", int(Hypercall.sched_op), 0]])
    assert runner._run(job, v) is False and job.steps[0][1:4] == [Hypercall.mmu_update, 0x1064, 150]
    assert runner._run(job, v) is False
    assert runner._run(job, v) is True
    assert calls == [(1, 0x1000, 250), (1, 0x1064, 150), (1, 0x10C8, 50)]
    assert job.results == [0, -errno.EPERM]                 # sched_op is not user space's
    assert v.hypercall_results["continuation"] == 2


def test_request_buffers_stay_in_the_argument_area():
    r = Request()
    a = r.put(b"x" * 5)
    b = r.alloc(3)
    assert a == ARG_BASE and b == ARG_BASE + 8
    i = r.call(Hypercall.dom0_op, a)
    assert r.steps[i] == ["h", Hypercall.dom0_op, a, 0, 0, 0, 0]
    with pytest.raises(Exception, match="argument space"):
        r.alloc(ARG_BYTES)
