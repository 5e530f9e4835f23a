"""The ELF32 loader (smpxen/guests/elf.py): what Xen 2.0's loader accepts, and every
malformed or hostile image refused with a clear error."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from smpxen.guests.elf import (HYPERVISOR_VIRT_START, MAX_IMAGE_BYTES, ElfLoadError, load_elf,
                               parse_guest_string)
from smpxen.guests.image import KernelImage
from support.elf import PF_R, PF_W, PF_X, make_elf


def write(tmp_path: Path, data: bytes, name="k.elf") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def load_error(tmp_path: Path, data: bytes) -> str:
    p = write(tmp_path, data)
    with pytest.raises(ElfLoadError) as ei:
        load_elf(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: "), msg
    return msg


def test_crafted_image_loads(tmp_path):
    code = bytes(range(32))
    img = load_elf(write(tmp_path, make_elf(
        segments=[(0xC0000000, code, 0x1000, PF_R | PF_X),
                  (0xC0001000, b"\1\2\3", 0x3000, PF_R | PF_W)],
        entry=0xC0000010)))
    assert isinstance(img, KernelImage)
    assert img.entry == 0xC0000010
    assert img.virt_base == 0xC0000000
    assert [(s.vaddr, s.data, s.memsz) for s in img.segments] == [
        (0xC0000000, code, 0x1000), (0xC0001000, b"\1\2\3", 0x3000)]
    assert img.guest_params == {"GUEST_OS": "linux", "XEN_VER": "2.0",
                                "VIRT_BASE": "0xC0000000", "LOADER": "generic"}
    assert not img.writable_pagetables
    assert img.name == str(tmp_path / "k.elf")


def test_virt_base_absent_is_lowest_vaddr_like_xen2(tmp_path):
    # xen/common/elf.c @RELEASE-2.0.0: dsi->v_start = kernstart (no rounding)
    img = load_elf(write(tmp_path, make_elf(
        segments=[(0xC0105000, b"\x90", 0x10, PF_X)],
        guest="XEN_VER=2.0,LOADER=generic,PT_MODE_WRITABLE")))
    assert img.virt_base == 0xC0105000
    assert img.writable_pagetables
    assert img.guest_params["PT_MODE_WRITABLE"] == ""


@pytest.mark.parametrize("text,value", [("0xC0000000", 0xC0000000),
                                        ("3221225472", 0xC0000000),
                                        ("030000000000", 0xC0000000)])
def test_virt_base_hex_decimal_octal(tmp_path, text, value):
    img = load_elf(write(tmp_path, make_elf(
        guest=f"GUEST_OS=linux,XEN_VER=2.0,VIRT_BASE={text}")))
    assert img.virt_base == value


def test_readonly_and_non_load_segments_are_ignored_as_in_xen(tmp_path):
    data = make_elf(segments=[(0xC0000000, b"\x90" * 4, 0x1000, PF_R | PF_X),
                              (0xC0001000, b"rodata", 0x1000, PF_R)])
    img = load_elf(write(tmp_path, data))
    assert [s.vaddr for s in img.segments] == [0xC0000000]


def test_parse_guest_string():
    assert parse_guest_string("A=1,B,C=x=y,,A=2") == {"A": "1", "B": "", "C": "x=y"}


def test_missing_xen_guest_section(tmp_path):
    assert "'__xen_guest' section not found" in load_error(tmp_path, make_elf(guest=None))


def test_wrong_xen_ver(tmp_path):
    msg = load_error(tmp_path, make_elf(guest="GUEST_OS=linux,XEN_VER=3.0,LOADER=generic"))
    assert "XEN_VER=2.0" in msg and "XEN_VER=3.0" in msg


def test_missing_xen_ver(tmp_path):
    assert "XEN_VER=2.0" in load_error(tmp_path, make_elf(guest="LOADER=generic"))


def test_wrong_loader(tmp_path):
    msg = load_error(tmp_path, make_elf(guest="GUEST_OS=netbsd,XEN_VER=2.0"))
    assert "LOADER=generic or GUEST_OS=linux" in msg


def test_bad_virt_base(tmp_path):
    msg = load_error(tmp_path, make_elf(guest="LOADER=generic,XEN_VER=2.0,VIRT_BASE=zz"))
    assert "bad VIRT_BASE" in msg


def test_virt_base_not_page_aligned(tmp_path):
    msg = load_error(tmp_path, make_elf(
        segments=[(0xC0000800, b"\x90", 0x10, PF_X)],
        guest="LOADER=generic,XEN_VER=2.0"))
    assert "not page-aligned" in msg


def test_truncated_header(tmp_path):
    msg = load_error(tmp_path, make_elf()[:40])
    assert "truncated ELF header" in msg


def test_not_elf(tmp_path):
    assert "not an ELF file" in load_error(tmp_path, b"#!/bin/sh\necho hi\n" * 4)


def test_empty_file(tmp_path):
    assert "empty" in load_error(tmp_path, b"")


def test_missing_file(tmp_path):
    with pytest.raises(ElfLoadError, match="cannot read file"):
        load_elf(tmp_path / "nope.elf")


def test_truncated_segment_data(tmp_path):
    data = make_elf(segments=[(0xC0000000, b"\x90" * 64, 0x100, PF_X)])
    # Keep the headers (section headers are at the end: move them is hard, so
    # instead cut the segment bytes by pointing p_offset past the end).
    buf = bytearray(data)
    struct.pack_into("<I", buf, 52 + 4, len(buf) - 8)      # p_offset
    msg = load_error(tmp_path, bytes(buf))
    assert "truncated file" in msg and "segment 0" in msg


def test_truncated_section_headers(tmp_path):
    data = make_elf()
    msg = load_error(tmp_path, data[:-10])
    assert "truncated file: section headers" in msg


def test_bad_machine(tmp_path):
    msg = load_error(tmp_path, make_elf(e_machine=62))
    assert "wrong machine EM_X86_64" in msg and "EM_386" in msg


def test_bad_class(tmp_path):
    assert "ELFCLASS64" in load_error(tmp_path, make_elf(ei_class=2))


def test_big_endian(tmp_path):
    assert "little-endian" in load_error(tmp_path, make_elf(ei_data=2))


def test_bad_type(tmp_path):
    msg = load_error(tmp_path, make_elf(e_type=3))
    assert "ET_DYN" in msg and "ET_EXEC" in msg


def test_overlapping_segments(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[
        (0xC0000000, b"\x90", 0x2000, PF_X),
        (0xC0001000, b"\x90", 0x1000, PF_W)]))
    assert "overlap" in msg and "0xc0000000" in msg and "0xc0001000" in msg


def test_oversized_segments(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[
        (0xC0000000, b"\x90", MAX_IMAGE_BYTES, PF_X),
        (0xD0000000, b"", 0x1000, PF_W)]))
    assert "more than 256 MiB" in msg


def test_oversized_span(tmp_path):
    # two small segments 1 GiB apart would make the builder map 1 GiB
    msg = load_error(tmp_path, make_elf(segments=[
        (0x80000000, b"\x90", 0x1000, PF_X),
        (0xC0000000, b"", 0x1000, PF_W)], guest="LOADER=generic,XEN_VER=2.0"))
    assert "more than 256 MiB" in msg and "spans" in msg


def test_segment_reaching_hypervisor_area(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[
        (0xFBFFF000, b"\x90", 0x2000, PF_X)], guest="LOADER=generic,XEN_VER=2.0"))
    assert "HYPERVISOR_VIRT_START" in msg and f"{HYPERVISOR_VIRT_START:#010x}" in msg


def test_segment_below_virt_base(tmp_path):
    msg = load_error(tmp_path, make_elf(
        segments=[(0xBFFFF000, b"\x90", 0x1000, PF_X)]))
    assert "below VIRT_BASE 0xc0000000" in msg


def test_filesz_larger_than_memsz(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[(0xC0000000, b"\x90" * 32, 16, PF_X)]))
    assert "filesz" in msg and "memsz" in msg


def test_entry_outside_image(tmp_path):
    msg = load_error(tmp_path, make_elf(entry=0xC0100000))
    assert "entry point 0xc0100000" in msg


def test_no_loadable_segments(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[(0xC0000000, b"x", 0x10, PF_R)]))
    assert "no loadable segments" in msg


def test_entry_in_a_gap_between_segments(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[
        (0xC0000000, b"\x90" * 16, 0x1000, PF_X),
        (0xC0100000, b"\x90" * 16, 0x1000, PF_X)], entry=0xC0001000))
    assert "entry point 0xc0001000 is in no loaded segment" in msg
    # Inside the second segment is fine.
    img = load_elf(write(tmp_path, make_elf(segments=[
        (0xC0000000, b"\x90" * 16, 0x1000, PF_X),
        (0xC0100000, b"\x90" * 16, 0x1000, PF_X)], entry=0xC0100004)))
    assert img.entry == 0xC0100004


def test_entry_only_in_an_ignored_readonly_segment(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[
        (0xC0000000, b"\x90" * 16, 0x1000, PF_X),
        (0xC0001000, b"\x90" * 16, 0x1000, PF_R),        # not loaded, as in Xen
        (0xC0002000, b"\x90" * 16, 0x1000, PF_W)], entry=0xC0001000))
    assert "entry point 0xc0001000 is in no loaded segment" in msg


def test_segment_wrapping_past_4gib(tmp_path):
    msg = load_error(tmp_path, make_elf(segments=[(0xFFFFF000, b"\x90", 0x2000, PF_X)],
                                        guest="LOADER=generic,XEN_VER=2.0"))
    assert "0xfffff000..0x100001000" in msg and "wraps past 4 GiB" in msg


@pytest.mark.parametrize("field, value, fragment", [
    (4, 0xFFFFFFFF, "truncated file: segment 0"),          # p_offset
    (16, 0xFFFFFFFF, "filesz 0xffffffff > memsz"),         # p_filesz
    (20, 0x20000000, "more than 256 MiB"),                 # p_memsz
    (8, 0xFFFFFF00, "reaches the hypervisor area"),        # p_vaddr
])
def test_wild_program_header_fields(tmp_path, field, value, fragment):
    buf = bytearray(make_elf())
    struct.pack_into("<I", buf, 52 + field, value)
    assert fragment in load_error(tmp_path, bytes(buf))


def test_every_truncation_is_refused(tmp_path):
    data = make_elf(segments=[(0xC0000000, bytes(range(40)), 0x1000, PF_X),
                              (0xC0001000, b"xyz", 0x1000, PF_W)])
    load_elf(write(tmp_path, data))
    for n in range(len(data)):
        load_error(tmp_path, data[:n])


@pytest.mark.parametrize("guest", [
    "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0x" + "F" * 40,
    "LOADER=generic,XEN_VER=2.0,VIRT_BASE=-1",
    "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0xFC000000",
    "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0x",
    "LOADER=generic,XEN_VER=2.0,VIRT_BASE=1_000",
])
def test_absurd_virt_base(tmp_path, guest):
    msg = load_error(tmp_path, make_elf(guest=guest))
    assert "VIRT_BASE" in msg


def test_guest_section_beyond_end_of_file(tmp_path):
    data = bytearray(make_elf())
    shoff = struct.unpack_from("<I", data, 32)[0]
    struct.pack_into("<I", data, shoff + 2 * 40 + 16, len(data) - 2)    # __xen_guest sh_offset
    assert "'__xen_guest' section extends beyond end of file" in load_error(tmp_path, bytes(data))


def test_image_larger_than_domain_memory(tmp_path):
    from smpxen.machine.images import KernelError, load_kernel
    p = write(tmp_path, make_elf(segments=[(0xC0000000, b"\x90" * 16, 0x1000, PF_X),
                                           (0xC0001000, b"", 8 << 20, PF_W)]))
    assert load_kernel(p, 16 << 20).vend == 0xC0801000
    with pytest.raises(KernelError) as ei:
        load_kernel(p, 4 << 20)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg
    assert msg.startswith(f"{p}: the domain's 4096 KiB is too small for it")
    # 8196 KiB of image, 4 of pfn->mfn list, 16 of L2 + 3 L1s, start_info, stack
    assert "bootstrap region, image to boot stack, needs 8224 KiB" in msg


def test_bootstrap_region_reaching_the_hypervisor_area(tmp_path):
    from smpxen.machine.images import KernelError, load_kernel

    # Legal as an image; a 1 GiB domain's pfn->mfn list (1 MiB) pushes the
    # bootstrap region past 0xFC000000, a 4 MiB domain's does not.
    p = write(tmp_path, make_elf(segments=[(0xFBF00000, b"\x90" * 16, 0x1000, PF_X)],
                                 guest="LOADER=generic,XEN_VER=2.0"))
    assert load_kernel(p, 4 << 20).virt_base == 0xFBF00000
    with pytest.raises(KernelError, match=r"would reach the hypervisor area at 0xfc000000"):
        load_kernel(p, 1024 << 20)
