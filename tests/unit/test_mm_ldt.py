"""Local descriptor tables (MMUEXT_SET_LDT): Xen 2.0's LDT rules in smpxen/mm/ over
a small real machine RAM. A frame mapped in a domain's LDT shadow is typed
PGT_ldt_page (validated with check_descriptor, so never with a DPL-0 descriptor),
holds a general and a type reference while mapped, can have no writable mapping
meanwhile (nor be mapped as an LDT while it has one), and the shadow is dropped as
a whole on invalidation or when the guest's own read-only mapping of an LDT page
goes."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpxen.mm.constants import LDT_FIRST, LDT_PAGES, XEN_RO
from smpxen.shm.frametable import (PGT_count_mask, PGT_gdt_page, PGT_l1_page_table, PGT_ldt_page,
                                   PGT_type_mask, PGT_validated, PGT_writable_page)
from support.mm import A_, DOM_A, DOM_B, FRAME, NA, RW, US, P, apply_op, check_counts, count, ftype
from support.mm import op as mm_op
from support.mm import tcount

DATA_DPL1 = (0x0008FFFF, 0x00CFB200)       # base 8, 4 GiB, ring-1 data, not accessed
DATA_DPL0 = (0x0008FFFF, 0x00CF9200)


@pytest.fixture
def m(m):
    """The memory tests' machine (tests/unit/conftest.py), recording the flushes and
    LDT reloads the memory code asks for."""
    m.flushes, m.reloads = [], []
    m.mm.request_flush = m.flushes.append
    m.mm.request_ldt_reload = m.reloads.append
    return m


def put_desc(m, mfn, index, desc):
    struct.pack_into("<II", m.ram.mem, (mfn << 12) + index * 8, *desc)


def shadow(m, d, off):
    return m.get(m.dt.find(d).perdomain_pt_mfn, LDT_FIRST + off)


def mapped_ro(m, l1, idx, mfn):
    """The guest maps `mfn` read-only at entry idx of its (pinned) L1 `l1`."""
    assert m.mm.update_entry((l1 << 12) + idx * 4, (mfn << 12) | P | US | A_, DOM_A, DOM_A)


@pytest.fixture
def ldt(m):
    """DOM_A with a pinned L1 mapping an LDT candidate frame read-only at entry 0."""
    l1, page = m.frames[DOM_A][0], m.frames[DOM_A][1]
    assert m.mm.pin_table(l1, PGT_l1_page_table, DOM_A)
    put_desc(m, page, 1, DATA_DPL1)
    mapped_ro(m, l1, 0, page)
    m.l1, m.page = l1, page
    return m


def test_mapping_types_validates_and_maps_read_only(ldt):
    m = ldt
    pte = m.get(m.l1, 0)
    assert m.mm.map_ldt_shadow_page(DOM_A, 3, pte)
    assert shadow(m, DOM_A, 3) == (m.page << 12) | XEN_RO          # read-only, not user
    assert ftype(m, m.page) == PGT_ldt_page and m.ft.frames[m.page].type_info & PGT_validated
    assert tcount(m, m.page) == 1 and count(m, m.page) == 3         # allocated + RO map + shadow
    lo, hi = struct.unpack_from("<II", m.ram.mem, (m.page << 12) + 8)
    assert hi & 0x100, "validation presets the accessed bit (the CPU cannot write it)"
    assert m.mm.ldt_shadow_frames(DOM_A) == [m.page]
    assert m.mm.map_ldt_shadow_page(DOM_A, 3, pte)                  # a retried fault: no new ref
    assert count(m, m.page) == 3 and tcount(m, m.page) == 1
    assert m.mm.audit(DOM_A) == []


def test_ldt_page_cannot_be_mapped_writable_while_mapped(ldt):
    m = ldt
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    rw = (m.page << 12) | P | RW | US
    assert not m.mm.update_entry((m.l1 << 12) + 4, rw, DOM_A, DOM_A)       # another VA
    assert not m.mm.update_entry(m.l1 << 12, rw, DOM_A, DOM_A)             # its own VA
    assert not m.mm.update_entry((m.page << 12) + 16, 0x1234, DOM_A, DOM_A)  # raw write
    assert not m.mm.get_page_type(m.page, PGT_writable_page)
    assert not m.mm.pin_table(m.page, PGT_l1_page_table, DOM_A)            # nor another type
    assert m.get(m.l1, 1) == 0 and count(m, m.page) == 3
    assert m.mm.audit(DOM_A) == []


def test_writable_or_other_typed_frame_cannot_become_ldt(ldt):
    m = ldt
    assert m.mm.update_entry((m.l1 << 12) + 4, (m.page << 12) | P | RW, DOM_A, DOM_A)
    before = (count(m, m.page), m.ft.frames[m.page].type_info)
    assert not m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    assert (count(m, m.page), m.ft.frames[m.page].type_info) == before
    assert shadow(m, DOM_A, 0) == 0
    # Once the writable mapping goes, it can.
    assert m.mm.update_entry((m.l1 << 12) + 4, 0, DOM_A, DOM_A)
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    # A GDT page or a page table is no LDT page either.
    g = m.frames[DOM_A][2]
    assert m.mm.set_gdt(DOM_A, [g], 300)
    mapped_ro(m, m.l1, 2, g)
    assert not m.mm.map_ldt_shadow_page(DOM_A, 1, m.get(m.l1, 2))
    assert ftype(m, g) == PGT_gdt_page
    mapped_ro(m, m.l1, 3, m.l1)
    assert not m.mm.map_ldt_shadow_page(DOM_A, 1, m.get(m.l1, 3))
    assert m.mm.audit(DOM_A) == []


def test_ring0_descriptor_page_refused_without_leaving_a_type(ldt):
    m = ldt
    bad = m.frames[DOM_A][2]
    put_desc(m, bad, 7, DATA_DPL0)
    mapped_ro(m, m.l1, 2, bad)
    assert not m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 2))
    assert m.ft.frames[bad].type_info == 0 and count(m, bad) == 2
    assert shadow(m, DOM_A, 0) == 0
    assert struct.unpack_from("<II", m.ram.mem, (bad << 12) + 56) == DATA_DPL0   # untouched
    assert m.mm.update_entry((m.l1 << 12) + 8, (bad << 12) | P | RW, DOM_A, DOM_A)
    assert m.mm.audit(DOM_A) == []


def test_foreign_absent_and_out_of_range_refused(ldt):
    m = ldt
    other = m.frames[DOM_B][0]
    assert not m.mm.map_ldt_shadow_page(DOM_A, 0, (other << 12) | P)
    assert not m.mm.map_ldt_shadow_page(DOM_A, 0, (m.page << 12) | RW)      # not present
    assert not m.mm.map_ldt_shadow_page(DOM_A, 0, (2 << 12) | P)           # hypervisor region
    assert not m.mm.map_ldt_shadow_page(DOM_A, LDT_PAGES, m.get(m.l1, 0))
    assert count(m, other) == 1 and tcount(m, other) == 0
    assert m.mm.ldt_shadow_frames(DOM_A) == []


def test_invalidate_drops_every_page_and_asks_for_a_flush(ldt):
    m = ldt
    page2 = m.frames[DOM_A][2]
    mapped_ro(m, m.l1, 1, page2)
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    assert m.mm.map_ldt_shadow_page(DOM_A, 1, m.get(m.l1, 1))
    m.flushes.clear()                       # (type changes asked for some too)
    assert not m.mm.invalidate_shadow_ldt(DOM_B)            # nothing mapped: no flush
    assert m.flushes == []
    assert m.mm.invalidate_shadow_ldt(DOM_A)
    assert m.flushes == [m.dt.find(DOM_A).processor] and m.reloads == [DOM_A]
    assert m.mm.ldt_shadow_frames(DOM_A) == []
    for f in (m.page, page2):
        assert tcount(m, f) == 0 and count(m, f) == 2        # allocated + the guest's RO map
    assert m.mm.update_entry((m.l1 << 12) + 16, (m.page << 12) | P | RW, DOM_A, DOM_A)
    assert ftype(m, m.page) == PGT_writable_page
    assert m.mm.audit(DOM_A) == []


def test_unmapping_the_guests_read_only_mapping_drops_the_shadow(ldt):
    """put_page_from_l1e: the shadow must not outlive the guest's own mapping."""
    m = ldt
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    m.flushes.clear()
    assert m.mm.update_entry(m.l1 << 12, 0, DOM_A, DOM_A)
    assert m.mm.ldt_shadow_frames(DOM_A) == [] and m.flushes == [0] and m.reloads == [DOM_A]
    assert count(m, m.page) == 1 and tcount(m, m.page) == 0
    # Unpinning (freeing) the L1 that maps it does the same.
    mapped_ro(m, m.l1, 0, m.page)
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    assert m.mm.unpin_table(m.l1, DOM_A)
    assert m.mm.ldt_shadow_frames(DOM_A) == [] and count(m, m.page) == 1
    assert m.mm.audit(DOM_A) == []


def test_update_descriptor_on_ldt_page(ldt):
    m = ldt
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    pa = (m.page << 12) + 2 * 8
    assert not m.mm.update_descriptor(DOM_A, pa, *DATA_DPL0)
    assert m.mm.update_descriptor(DOM_A, pa, *DATA_DPL1)
    lo, hi = struct.unpack_from("<II", m.ram.mem, pa)
    assert lo >> 16 == 8 and hi == DATA_DPL1[1] | 0x100    # checked: accessed, limit cut
    assert ftype(m, m.page) == PGT_ldt_page and tcount(m, m.page) == 1
    assert m.mm.audit(DOM_A) == []


def test_audit_counts_the_shadow(ldt):
    m = ldt
    assert m.mm.map_ldt_shadow_page(DOM_A, 0, m.get(m.l1, 0))
    f = m.ft.frames[m.page]
    f.count_info -= 1                       # a lost shadow reference is noticed
    assert any("count" in p for p in m.mm.audit(DOM_A))
    f.count_info += 1
    assert m.mm.audit(DOM_A) == []

# ---- random sequences: page-table operations mixed with LDT maps ------------------
ldt_op = st.one_of(
    mm_op,
    st.tuples(st.just("ldt_map"), FRAME, st.integers(0, 2)),
    st.tuples(st.just("ldt_inval")),
    st.tuples(st.just("ldt_desc"), FRAME, st.integers(0, 511),
              st.sampled_from([DATA_DPL1, DATA_DPL0, (0, 0)])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ldt_op, min_size=1, max_size=40))
def test_random_operations_with_ldt_keep_counts_and_types(machine, ops):
    m = machine.fresh()
    mm = m.mm
    bases, held = [], []
    for o in ops:
        if o[0] == "ldt_map":
            mfn = m.frames[DOM_A][o[1] % NA]
            ok = mm.map_ldt_shadow_page(DOM_A, o[2], (mfn << 12) | P)
            if ok:
                assert shadow(m, DOM_A, o[2]) >> 12 == mfn
        elif o[0] == "ldt_inval":
            mm.invalidate_shadow_ldt(DOM_A)
        elif o[0] == "ldt_desc":
            mfn = m.frames[DOM_A][o[1] % NA]
            mm.update_descriptor(DOM_A, (mfn << 12) + o[2] * 8, *o[3])
        else:
            apply_op(m, o, bases, held)
        check_counts(m, o, bases, held)       # the audit counts the shadow's references
        in_shadow = mm.ldt_shadow_frames(DOM_A)
        for f in in_shadow:
            t = m.ft.frames[f].type_info
            assert t & PGT_type_mask == PGT_ldt_page and t & PGT_validated and t & PGT_count_mask
        for f in m.frames[DOM_A]:
            t = m.ft.frames[f].type_info
            if t & PGT_type_mask == PGT_ldt_page and t & PGT_count_mask:
                assert f in in_shadow, "only the shadow holds LDT type references"
                descs = struct.unpack_from("<1024I", m.ram.mem, f << 12)
                assert all(lo_hi_ok(descs[i], descs[i + 1]) for i in range(0, 1024, 2))


def lo_hi_ok(lo, hi):
    """A descriptor an LDT page may hold: not present, or DPL > 0 (check_descriptor
    also checks the rest; ring 0 is the one that matters here)."""
    return not hi & 0x8000 or hi & 0x6000
