"""The domain builder (smpxen/domain/builder.py): the start-of-day state Xen 2.0's
construct_dom0 leaves, and its refusals."""
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpxen.domain.builder import BuildError, plan_layout
from smpxen.guests.assemble import assemble_guest
from smpxen.hv.guestmem import GuestFault, GuestMemory
from smpxen.shm.frametable import (PGT_l1_page_table, PGT_l2_page_table, PGT_pinned, PGT_type_mask,
                                   PGT_writable_page)
from smpxen.xen.structs import SharedInfo, StartInfo


def test_builder_start_of_day(build_domain):
    ram, layout, ft, info = build_domain()
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


def test_builder_refuses_too_little_memory(build_domain):
    with pytest.raises(BuildError, match="too small"):
        build_domain(mem=16 << 10)


def test_builder_refuses_more_than_free(build_domain):
    with pytest.raises(BuildError, match="not enough free machine memory"):
        build_domain(mem=15 << 20)


@given(st.integers(1, 4096), st.integers(0x100000, 0xF0000000 // 4096 * 4096))
def test_plan_layout_is_ordered_and_covered(nr_pages, kernel_size):
    from smpxen.guests.image import KernelImage, Segment
    image = KernelImage("k", [Segment(0xC0000000, b"", min(kernel_size, 0x3000000))], 0xC0000000, 0xC0000000)
    p = plan_layout(image, nr_pages)
    assert image.vend <= p["v_mfn_list"] < p["v_pt"] < p["v_start_info"] < p["v_stack"] < p["v_stack_end"]
    assert p["v_end"] % (4 << 20) == 0 and p["v_end"] >= p["v_stack_end"] + (512 << 10)
    assert p["nr_l1"] * (4 << 20) >= p["v_end"] - (image.virt_base & ~((4 << 20) - 1))
