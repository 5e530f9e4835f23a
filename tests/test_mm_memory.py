"""smpxen.mm.memory directly over a real (small) machine RAM: Xen's reference and
type rules, validation, and random operation sequences that must keep every count
equal to the references that exist."""
from __future__ import annotations

import struct
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from smpxen.mm.descriptor import check_descriptor
from smpxen.mm.memory import MM
from smpxen.mm.tlbflush import need_flush
from smpxen.shm.boot import default_gdt, format_hypervisor_region
from smpxen.shm.domains import DS_RUNNING, DomainTable
from smpxen.shm.frametable import (OWNER_NONE, OWNER_XEN, PGC_allocated, PGC_count_mask,
                                   PGT_count_mask, PGT_gdt_page, PGT_l1_page_table,
                                   PGT_l2_page_table, PGT_pinned, PGT_type_mask, PGT_va_mutable,
                                   PGT_va_shift, PGT_va_unknown, PGT_validated, PGT_writable_page,
                                   FrameTable)
from smpxen.shm.layout import PERDOMAIN_SLOT, Layout
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


@pytest.fixture(scope="module")
def machine():
    m = Machine()
    yield m
    del m.ft, m.dt
    m.ram.close()


@pytest.fixture
def m(machine):
    return machine.fresh()


def count(m, mfn):
    return m.ft.frames[mfn].count_info & PGC_count_mask


def tcount(m, mfn):
    return m.ft.frames[mfn].type_info & PGT_count_mask


def ftype(m, mfn):
    return m.ft.frames[mfn].type_info & PGT_type_mask


# ---- get_page / types ---------------------------------------------------------------
def test_get_page_checks_owner_range_and_free(m):
    a0, b0 = m.frames[DOM_A][0], m.frames[DOM_B][0]
    assert m.mm.get_page(a0, DOM_A) and count(m, a0) == 2
    assert not m.mm.get_page(b0, DOM_A)
    assert not m.mm.get_page(m.layout.nr_frames, DOM_A)
    assert not m.mm.get_page(1, DOM_A)                       # hypervisor region
    free = m.ft.header.free_head
    assert m.ft.frames[free].owner == OWNER_NONE and not m.mm.get_page(free, DOM_A)
    m.mm.put_page(a0)
    assert count(m, a0) == 1


def test_type_changes_only_at_type_count_zero(m):
    a0 = m.frames[DOM_A][0]
    assert m.mm.get_page_and_type(a0, DOM_A, PGT_writable_page)
    assert m.ft.frames[a0].type_info & PGT_validated
    assert not m.mm.get_page_type(a0, PGT_l1_page_table | PGT_va_mutable)
    m.mm.put_page_and_type(a0)
    assert tcount(m, a0) == 0
    assert m.mm.get_page_and_type(a0, DOM_A, PGT_l1_page_table | PGT_va_mutable)   # empty L1
    assert ftype(m, a0) == PGT_l1_page_table
    assert not m.mm.get_page_type(a0, PGT_writable_page)


def test_l1_validation_refuses_bad_entries_and_rolls_back(m):
    a = m.frames[DOM_A]
    l1, data = a[0], a[1]
    for bad in ((m.frames[DOM_B][0] << 12) | P,            # another domain's frame
                (2 << 12) | P,                             # hypervisor region
                (m.layout.nr_frames << 12) | P,            # outside RAM
                (data << 12) | P | G,                      # global
                (data << 12) | P | PSE):                   # PAT
        m.fresh()
        m.put(l1, 0, (data << 12) | P | RW)
        m.put(l1, 5, bad)
        assert not m.mm.pin_table(l1, PGT_l1_page_table, DOM_A)
        assert count(m, data) == 1 and tcount(m, data) == 0, "refs of entry 0 rolled back"
        assert m.ft.frames[l1].type_info == 0 and count(m, l1) == 1


def test_page_table_frame_cannot_be_mapped_writable(m):
    a = m.frames[DOM_A]
    l1, other = a[0], a[1]
    assert m.mm.pin_table(l1, PGT_l1_page_table, DOM_A)
    m.put(other, 0, 0)
    assert m.mm.pin_table(other, PGT_l1_page_table, DOM_A)
    assert not m.mm.mod_l1_entry((other << 12), (l1 << 12) | P | RW, DOM_A, DOM_A)
    assert m.mm.mod_l1_entry((other << 12), (l1 << 12) | P, DOM_A, DOM_A)   # read-only is fine
    assert count(m, l1) == 3 and tcount(m, l1) == 1


def test_l2_validation_types_l1s_with_back_pointer_and_xen_slots(m):
    a = m.frames[DOM_A]
    l2, l1, data = a[0], a[1], a[2]
    m.put(l1, 3, (data << 12) | P | RW)
    m.put(l2, 7, (l1 << 12) | P | RW)
    m.put(l2, 1010, 0xDEAD0000 | P)                       # guest junk in Xen's slots
    assert m.mm.pin_table(l2, PGT_l2_page_table, DOM_A)
    t = m.ft.frames[l1].type_info
    assert t & PGT_type_mask == PGT_l1_page_table and (t >> PGT_va_shift) & 0x3FF == 7
    assert ftype(m, data) == PGT_writable_page and tcount(m, data) == 1
    assert m.get(l2, PERDOMAIN_SLOT) >> 12 == m.dt.find(DOM_A).perdomain_pt_mfn
    assert m.get(l2, 1010) != 0xDEAD0000 | P
    assert m.mm.mod_l2_entry((l2 << 12) + 1009 * 4, 0, l2, DOM_A) is False   # Xen's slot
    # The same L1 in a second slot: back pointer becomes unknown.
    assert m.mm.update_entry((l2 << 12) + 9 * 4, (l1 << 12) | P, DOM_A, DOM_A)
    assert m.ft.frames[l1].type_info & PGT_va_unknown == PGT_va_unknown
    assert m.mm.audit(DOM_A) == []


def test_linear_self_map_read_only_only(m):
    a = m.frames[DOM_A]
    l2 = a[0]
    m.put(l2, 5, (l2 << 12) | P | RW)
    assert not m.mm.pin_table(l2, PGT_l2_page_table, DOM_A)
    m.fresh()
    m.put(l2, 5, (l2 << 12) | P)
    assert m.mm.pin_table(l2, PGT_l2_page_table, DOM_A)
    assert count(m, l2) == 2 and tcount(m, l2) == 1       # self map takes no reference
    m2 = a[1]
    assert m.mm.pin_table(m2, PGT_l2_page_table, DOM_A)
    assert m.mm.update_entry((m2 << 12) + 4, (l2 << 12) | P, DOM_A, DOM_A)   # other L2, RO
    assert tcount(m, l2) == 2
    assert not m.mm.update_entry((m2 << 12) + 8, (l2 << 12) | P | RW, DOM_A, DOM_A)
    assert m.mm.audit(DOM_A) == []


def test_mod_l1_entry_flag_fast_path_and_refusals(m):
    a = m.frames[DOM_A]
    l1, data = a[0], a[1]
    assert m.mm.pin_table(l1, PGT_l1_page_table, DOM_A)
    ptr = (l1 << 12) + 8
    assert m.mm.update_entry(ptr, (data << 12) | P | RW, DOM_A, DOM_A)
    c = count(m, data)
    assert m.mm.update_entry(ptr, (data << 12) | P | RW | A_ | D_, DOM_A, DOM_A)
    assert count(m, data) == c                                  # flags only: no new ref
    assert not m.mm.update_entry(ptr, (data << 12) | P | RW | G, DOM_A, DOM_A)
    assert not m.mm.update_entry(ptr, (m.frames[DOM_B][0] << 12) | P, DOM_A, DOM_A)
    assert m.get(l1, 2) == (data << 12) | P | RW | A_ | D_       # refused updates change nothing
    assert m.mm.update_entry(ptr, (m.frames[DOM_B][0] << 12) | P, DOM_A, DOM_B)  # FOREIGNDOM
    assert ftype(m, data) == PGT_writable_page and tcount(m, data) == 0
    assert m.mm.update_entry(ptr, 0, DOM_A, DOM_A)
    assert count(m, m.frames[DOM_B][0]) == 1


def test_unpin_frees_table_refs_and_reenables_type_change(m):
    a = m.frames[DOM_A]
    l1, data = a[0], a[1]
    m.put(l1, 0, (data << 12) | P | RW)
    assert m.mm.pin_table(l1, PGT_l1_page_table, DOM_A)
    assert not m.mm.pin_table(l1, PGT_l1_page_table, DOM_A)     # pins do not nest
    assert tcount(m, data) == 1
    assert m.mm.unpin_table(l1, DOM_A)
    assert not m.mm.unpin_table(l1, DOM_A)
    assert tcount(m, data) == 0 and count(m, data) == 1
    assert not m.ft.frames[l1].type_info & PGT_validated
    assert m.mm.get_page_and_type(l1, DOM_A, PGT_writable_page)


def test_free_dom_page_refuses_page_tables_in_use(m):
    a = m.frames[DOM_A]
    l2, l1, data = a[0], a[1], a[2]
    m.put(l2, 0, (l1 << 12) | P)
    assert m.mm.pin_table(l2, PGT_l2_page_table, DOM_A)
    assert not m.mm.free_dom_page(l1, DOM_A)            # hooked into the L2
    assert m.mm.free_dom_page(l2, DOM_A)                # only its pin: unpinned and freed
    assert m.ft.frames[l2].owner == OWNER_NONE
    assert m.dt.find(DOM_A).tot_pages == NA - 1
    assert m.mm.free_dom_page(l1, DOM_A)
    assert not m.mm.free_dom_page(m.frames[DOM_B][0], DOM_A)
    # A mapped frame is released but stays allocated until its mapping goes.
    l1b = a[3]
    m.put(l1b, 0, (data << 12) | P)
    assert m.mm.pin_table(l1b, PGT_l1_page_table, DOM_A)
    assert m.mm.free_dom_page(data, DOM_A)
    assert m.ft.frames[data].owner == DOM_A and not m.ft.frames[data].count_info & PGC_allocated
    assert m.mm.update_entry(l1b << 12, 0, DOM_A, DOM_A)
    assert m.ft.frames[data].owner == OWNER_NONE


def test_alloc_respects_max_pages_and_reports_cpus_to_flush(m):
    a = m.frames[DOM_A]
    assert m.mm.alloc_domheap_pages(DOM_A, 1) is None       # at max_pages
    assert m.mm.free_dom_page(a[5], DOM_A)
    stamp = m.ft.frames[a[5]].tlbflush_timestamp
    assert m.ft.frames[a[5]].cpu_mask == 1                   # DOM_A runs on PCPU 0
    # Freed frames go to the head of the pool: the next allocation reuses it.
    got = m.mm.alloc_domheap_pages(DOM_B, 0)
    assert got == ([], set(), set(), set())
    m.dt.find(DOM_B).max_pages = NB + 1
    mfns, tlb, tb, may = m.mm.alloc_domheap_pages(DOM_B, 1)
    assert mfns == [a[5]] and tlb == {0} and tb == {0} and may == {0}
    assert m.ft.frames[a[5]].owner == DOM_B
    # Freed by DOM_B (PCPU 1): once PCPU 1 flushed after the free, no flush is needed.
    assert m.mm.free_dom_page(a[5], DOM_B)
    assert m.ft.frames[a[5]].cpu_mask == 2
    t = m.mm.clock.tick()
    m.mm.clock.flushed(1, t, translations=True)
    mfns, tlb, tb, may = m.mm.alloc_domheap_pages(DOM_B, 1)
    assert mfns == [a[5]] and tlb == set() and tb == set() and may == {1}
    assert stamp < t


def test_need_flush_clock_rules():
    assert need_flush(10, 3, 5)          # CPU flushed before the frame's last use
    assert not need_flush(10, 6, 5)      # flushed after
    assert need_flush(0, 6, 5)           # clock at zero: always flush
    assert not need_flush(4, 3, 5)       # stamp from the future of a wrapped clock


def test_check_descriptor():
    flat_ring1 = (0x0000FFFF, 0x00CFBA00)
    lo, hi = check_descriptor(*flat_ring1)
    assert hi & 0x100                                        # accessed bit preset
    limit = (((hi & 0xF0000) | (lo & 0xFFFF)) + 1) << 12
    assert limit == 0xFC400000                               # truncated at PAGE_OFFSET
    assert check_descriptor(0x0000FFFF, 0x00CF9A00) is None  # DPL 0
    assert check_descriptor(0x0000FFFF, 0xFCCFBA40) is None  # base at PAGE_OFFSET (Xen's area)
    assert check_descriptor(0xF0000000, 0xFCC0BA3F) is None  # base a page below PAGE_OFFSET
    lo, hi = check_descriptor(0x0000FFFF, 0xFCCFBA00)        # base in the read-only M2P:
    assert ((hi & 0xF0000) | (lo & 0xFFFF)) == 0x3FF         # allowed, limit cut at PAGE_OFFSET
    assert check_descriptor(0x0000FFFF, 0x00CF3A00) == (0x0000FFFF, 0x00CF3A00)  # not present
    assert check_descriptor(0x08190000, 0x0000AC00) is not None   # DPL-1 call gate to FLAT_RING1_CS
    assert check_descriptor(0x08190000, 0x0000EC00) is None       # DPL 3: needs a TSS (none)
    assert check_descriptor(0x08080000, 0x0000AC00) is None       # call gate to Xen's CS
    assert check_descriptor(0x08190000, 0x0000EE00) is None       # interrupt gate


def test_set_gdt_and_update_descriptor(m):
    a = m.frames[DOM_A]
    g = a[0]
    struct.pack_into("<II", m.ram.mem, (g << 12) + 8, 0x0000FFFF, 0x00CFB200)
    assert m.mm.set_gdt(DOM_A, [g], 300)
    assert ftype(m, g) == PGT_gdt_page and tcount(m, g) == 1
    assert m.mm.gdt_frames(DOM_A) == [g]
    lo, hi = struct.unpack_from("<II", m.ram.mem, (g << 12) + 8)
    assert hi & 0x100                                        # accessed bit set
    assert m.ram.mem[(g << 12) + 259 * 8:(g << 12) + 260 * 8] == default_gdt()[259 * 8:260 * 8]
    assert not m.mm.get_page_type(g, PGT_writable_page)
    assert m.mm.update_descriptor(DOM_A, (g << 12) + 16, 0x0000FFFF, 0x00CFF200)
    assert not m.mm.update_descriptor(DOM_A, (g << 12) + 16, 0x0000FFFF, 0x00CF9200)
    assert not m.mm.update_descriptor(DOM_A, (g << 12) + 259 * 8, 0x0000FFFF, 0x00CFF200)
    assert not m.mm.update_descriptor(DOM_A, (g << 12) + 20, 0x0000FFFF, 0x00CFF200)
    bad = a[1]
    struct.pack_into("<II", m.ram.mem, (bad << 12), 0x0000FFFF, 0x00CF9A00)
    assert not m.mm.set_gdt(DOM_A, [g, bad], 1000)
    assert m.mm.gdt_frames(DOM_A) == [g] and tcount(m, g) == 1
    assert m.mm.audit(DOM_A) == []


# ---- random sequences ---------------------------------------------------------------
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=40))
def test_random_operations_keep_counts_exact(machine, ops):
    m = machine.fresh()
    bases, held = [], []
    for o in ops:
        apply_op(m, o, bases, held)
        check_counts(m, o, bases, held)


def test_a_released_frame_a_table_still_maps_can_be_pinned_and_goes_with_its_last_reference(machine):
    """Hypothesis found this sequence: a frame released with decrease_reservation while
    an L1 maps it stays the domain's (Xen 2.0's rule), may be pinned, and returns to
    the pool once the pin and the mapping are gone."""
    m = machine.fresh()
    bases, held = [], []
    ops = [("raw", 0, 0, ("a", 1, P)), ("pin1", 0), ("free", 1), ("pin1", 1)]
    for o in ops:
        apply_op(m, o, bases, held)
        check_counts(m, o, bases, held)
    f0, f1 = m.frames[DOM_A][0], m.frames[DOM_A][1]
    assert m.ft.frames[f1].type_info & PGT_pinned and not m.ft.frames[f1].count_info & PGC_allocated
    free_before = m.ft.header.free_count
    assert m.mm.unpin_table(f1, DOM_A)
    assert m.ft.frames[f1].owner == DOM_A            # the L1 at f0 still maps it
    assert m.mm.unpin_table(f0, DOM_A)               # its last reference goes with the L1's type
    assert m.ft.header.free_count == free_before + 1
    assert m.mm.audit(DOM_A) == []
