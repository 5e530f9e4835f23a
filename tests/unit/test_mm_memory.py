"""smpxen.mm.memory directly over a real (small) machine RAM: Xen's reference and
type rules, validation, and random operation sequences that must keep every count
equal to the references that exist."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpxen.mm.descriptor import check_descriptor
from smpxen.mm.tlbflush import need_flush
from smpxen.shm.boot import default_gdt
from smpxen.shm.frametable import (OWNER_NONE, PGC_allocated, PGT_gdt_page, PGT_l1_page_table,
                                   PGT_l2_page_table, PGT_pinned, PGT_type_mask, PGT_va_mutable, PGT_va_shift,
                                   PGT_va_unknown, PGT_validated, PGT_writable_page)
from smpxen.shm.layout import PERDOMAIN_SLOT
from support.mm import (A_, D_, DOM_A, DOM_B, NA, NB, PSE, RW, G, P, apply_op, check_counts, count, ftype, op,
                        tcount)


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


def test_a_freed_frame_names_every_pcpu_its_domain_ran_on_for_translated_code(m):
    # DOM_A (on PCPU 0) ran on PCPU 1 before: its code may still be translated there,
    # which a CR3 switch does not drop. A frame it frees names both PCPUs.
    a = m.frames[DOM_A]
    m.dt.find(DOM_A).ran_mask = 0b11
    assert m.mm.free_dom_page(a[5], DOM_A)
    assert m.ft.frames[a[5]].cpu_mask == 0b11
    m.dt.find(DOM_B).max_pages = NB + 1
    mfns, tlb, tb, may = m.mm.alloc_domheap_pages(DOM_B, 1)
    assert mfns == [a[5]] and tb == {0, 1} and may == {0, 1}
