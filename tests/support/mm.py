"""The memory-management test harness: a small real machine RAM with two domains'
frames (DOM_A: NA frames on PCPU 0, DOM_B: NB frames on PCPU 1), count helpers,
and random operation sequences on DOM_A whose counts audit() must find exact."""
from __future__ import annotations

import struct
from collections import Counter

from hypothesis import strategies as st

from smpxen.mm.memory import MM
from smpxen.shm.boot import format_hypervisor_region
from smpxen.shm.domains import DS_RUNNING, DomainTable
from smpxen.shm.frametable import (OWNER_XEN, FrameTable, PGC_count_mask, PGT_count_mask, PGT_l1_page_table,
                                   PGT_l2_page_table, PGT_pinned, PGT_type_mask, PGT_validated,
                                   PGT_writable_page)
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM

P, RW, US, A_, D_, PSE, G = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100
DOM_A, DOM_B = 1, 2
NA, NB = 16, 4
RAM = 8 << 20


class Machine:
    def __init__(self):
        self.ram = MachineRAM.create(RAM)
        self.ram.unlink()
        self.layout = Layout.compute(RAM, 2)
        self.ft = FrameTable(self.ram, self.layout, Locks(self.ram.fd))
        self.dt = DomainTable(self.ram, self.layout)

    def fresh(self):
        format_hypervisor_region(self.ram, self.layout, self.ft)
        for d in self.dt.slots:
            d.state = 0
        self.frames = {}
        for domid, n, cpu in ((DOM_A, NA, 0), (DOM_B, NB, 1)):
            mfns = self.ft.alloc(domid, n)
            pd = self.ft.alloc(OWNER_XEN, 1)[0]
            for m in mfns + [pd]:
                self.ram.zero_frame(m)
            info = self.dt.allocate(domid)
            info.state = DS_RUNNING
            info.tot_pages = info.max_pages = n
            info.processor = cpu
            info.perdomain_pt_mfn = pd
            self.frames[domid] = mfns
        self.mm = MM(self.ft, self.ram, self.dt)
        return self

    def put(self, mfn, idx, val):
        struct.pack_into("<I", self.ram.mem, (mfn << 12) + idx * 4, val)

    def get(self, mfn, idx):
        return struct.unpack_from("<I", self.ram.mem, (mfn << 12) + idx * 4)[0]


def count(m, mfn):
    return m.ft.frames[mfn].count_info & PGC_count_mask


def tcount(m, mfn):
    return m.ft.frames[mfn].type_info & PGT_count_mask


def ftype(m, mfn):
    return m.ft.frames[mfn].type_info & PGT_type_mask


# ---- random operation sequences ------------------------------------------------
FLAGS = st.sampled_from([P, P | RW, P | RW | US | A_ | D_, P | US, P | G, P | PSE, RW, 0])


def _target(m, kind, i):
    if kind == "a":
        return m.frames[DOM_A][i % NA]
    if kind == "b":
        return m.frames[DOM_B][i % NB]
    if kind == "hv":
        return i % m.layout.hv_frames
    return m.layout.nr_frames + i


entry = st.tuples(st.sampled_from(["a", "a", "a", "b", "hv", "out"]), st.integers(0, 7), FLAGS)
FRAME = st.integers(0, 5)      # few frames, so tables reference each other often
op = st.one_of(
    st.tuples(st.just("raw"), FRAME, st.integers(0, 1023), entry),
    st.tuples(st.just("mod"), FRAME, st.integers(0, 1023), entry),
    st.tuples(st.just("pin1"), FRAME),
    st.tuples(st.just("pin2"), FRAME),
    st.tuples(st.just("unpin"), FRAME),
    st.tuples(st.just("base"), FRAME),
    st.tuples(st.just("unbase"), st.integers(0, 7)),
    st.tuples(st.just("hold_w"), FRAME),
    st.tuples(st.just("release"), st.integers(0, 7)),
    st.tuples(st.just("free"), FRAME),
)
SLOTS = [0, 1, 2, 3, 1007]


def apply_op(m, o, bases: list, held: list) -> None:
    """One random operation on DOM_A; `bases`/`held` are the test's own references."""
    mm = m.mm
    kind = o[0]
    mfn = m.frames[DOM_A][o[1] % NA] if kind not in ("unbase", "release") else None
    if kind in ("raw", "mod"):
        tk, ti, flags = o[3]
        tgt = _target(m, tk, ti)
        val = ((tgt << 12) | flags) & 0xFFFFFFFF
        idx = SLOTS[o[2] % len(SLOTS)]
        if kind == "raw":
            if tcount(m, mfn) == 0 and m.ft.frames[mfn].owner == DOM_A:
                m.put(mfn, idx, val)
        else:
            before = m.get(mfn, idx) if m.ft.frames[mfn].owner == DOM_A else None
            ok = mm.update_entry((mfn << 12) + idx * 4, val, DOM_A, DOM_A)
            bad_target = flags & P and (tk != "a" or flags & (G | PSE))
            if ok and ftype(m, mfn) in (PGT_l1_page_table, PGT_l2_page_table):
                assert not bad_target, f"accepted {val:#x} into a page table"
            if not ok and before is not None:
                assert m.get(mfn, idx) == before
    elif kind == "pin1":
        mm.pin_table(mfn, PGT_l1_page_table, DOM_A)
    elif kind == "pin2":
        mm.pin_table(mfn, PGT_l2_page_table, DOM_A)
    elif kind == "unpin":
        mm.unpin_table(mfn, DOM_A)
    elif kind == "base":
        if mm.get_page_and_type(mfn, DOM_A, PGT_l2_page_table):
            bases.append(mfn)
    elif kind == "unbase" and bases:
        mm.put_page_and_type(bases.pop(o[1] % len(bases)))
    elif kind == "hold_w":
        if mm.get_page_and_type(mfn, DOM_A, PGT_writable_page):
            held.append(mfn)
    elif kind == "release" and held:
        mm.put_page_and_type(held.pop(o[1] % len(held)))
    elif kind == "free":
        if mfn in bases or mfn in held:
            return        # the test's own references would dangle
        mm.free_dom_page(mfn, DOM_A)


def check_counts(m, o, bases: list, held: list) -> None:
    """Every count equals the references that exist; DOM_B is untouched."""
    mm = m.mm
    holds = {k: (v, v) for k, v in Counter(held).items()}
    problems = mm.audit(DOM_A, baseptrs=bases, held=holds)
    assert problems == [], (o, problems)
    assert mm.audit(DOM_B) == []
    owned = [f for f in m.frames[DOM_A] if m.ft.frames[f].owner == DOM_A]
    assert m.dt.find(DOM_A).tot_pages == len(owned)
    for f in m.frames[DOM_B]:
        assert count(m, f) == 1 and tcount(m, f) == 0, "the other domain is untouched"
    for f in owned:
        t = m.ft.frames[f].type_info
        if t & PGT_count_mask and t & PGT_type_mask in (PGT_l1_page_table, PGT_l2_page_table):
            assert t & PGT_validated
    # A pin holds a type reference. It need not come with PGC_allocated: as in Xen 2.0,
    # a frame the domain released while a table still maps it stays the domain's
    # until its last reference goes, and may be pinned meanwhile (audit counts it).
    pinned = [f for f in owned if m.ft.frames[f].type_info & PGT_pinned]
    for f in pinned:
        assert tcount(m, f) >= 1
