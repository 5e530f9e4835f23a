"""ELF32 loader (smpxen.guests.elf) and the bundled C guest (smpxen/guests/c)."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from smpxen.guests.elf import (HYPERVISOR_VIRT_START, MAX_IMAGE_BYTES, ElfLoadError,
                               load_elf, parse_guest_string)
from smpxen.guests.image import KernelImage

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "scripts" / "build_c_guest.sh"
GUEST_STRING = "GUEST_OS=linux,XEN_VER=2.0,VIRT_BASE=0xC0000000,LOADER=generic"

PF_X, PF_W, PF_R = 1, 2, 4


# --------------------------------------------------------------------------
# Crafting ELF images in Python
# --------------------------------------------------------------------------

def make_elf(segments=((0xC0000000, b"\xfc\xf4" * 8, 0x100, PF_R | PF_X),),
             guest: str | bytes | None = GUEST_STRING, entry=None,
             ei_class=1, ei_data=1, e_type=2, e_machine=3) -> bytes:
    """A minimal ELF32 LSB executable. ``segments``: (vaddr, data, memsz, flags)
    tuples, each a PT_LOAD; ``guest``: the __xen_guest string (NUL added), or
    None for no such section."""
    ehsize, phentsize, shentsize = 52, 32, 40
    phnum = len(segments)
    phoff = ehsize
    off = phoff + phnum * phentsize
    blobs, phdrs = [], []
    for vaddr, data, memsz, flags in segments:
        off = (off + 15) & ~15
        phdrs.append(struct.pack("<IIIIIIII", 1, off, vaddr, vaddr, len(data), memsz,
                                 flags, 0x1000))
        blobs.append((off, data))
        off += len(data)
    names = [b"", b".shstrtab"] + ([b"__xen_guest"] if guest is not None else [])
    shstr = b"".join(n + b"\0" for n in names)
    name_off = [shstr.index(n + b"\0") if n else 0 for n in names]
    shstr_off = off
    off += len(shstr)
    sections = [(0, 0, 0, 0)]                       # (name, type, offset, size)
    sections.append((name_off[1], 3, shstr_off, len(shstr)))
    if guest is not None:
        gbytes = (guest.encode() if isinstance(guest, str) else guest) + b"\0"
        sections.append((name_off[2], 1, off, len(gbytes)))
        blobs.append((off, gbytes))
        off += len(gbytes)
    blobs.append((shstr_off, shstr))
    shoff = (off + 3) & ~3
    if entry is None:
        entry = segments[0][0] if segments else 0
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1]) + bytes(9)
    ehdr = struct.pack("<16sHHIIIIIHHHHHH", ident, e_type, e_machine, 1, entry, phoff,
                       shoff, 0, ehsize, phentsize, phnum, shentsize, len(sections), 1)
    out = bytearray(shoff + shentsize * len(sections))
    out[0:ehsize] = ehdr
    out[phoff:phoff + phnum * phentsize] = b"".join(phdrs)
    for o, data in blobs:
        out[o:o + len(data)] = data
    for i, (name, typ, o, size) in enumerate(sections):
        struct.pack_into("<IIIIIIIIII", out, shoff + i * shentsize,
                         name, typ, 0, 0, o, size, 0, 0, 1, 0)
    return bytes(out)


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


# --------------------------------------------------------------------------
# Well-formed crafted images
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Malformed images
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# The bundled C guest
# --------------------------------------------------------------------------

def _gcc_m32_reason(tmp_path: Path) -> str | None:
    """None if `gcc -m32` can build a freestanding program, else why not."""
    if shutil.which("gcc") is None:
        return "gcc not found"
    src = tmp_path / "probe.c"
    src.write_text("void _start(void) { for (;;) ; }\n")
    r = subprocess.run(["gcc", "-m32", "-ffreestanding", "-nostdlib", "-static", "-no-pie",
                        str(src), "-o", str(tmp_path / "probe")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "gcc -m32 cannot compile/link 32-bit code: " + (r.stderr.strip()
                                                              .splitlines() or ["?"])[-1]
    return None


@pytest.fixture(scope="module")
def c_guest(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cguest")
    reason = _gcc_m32_reason(tmp)
    if reason:
        pytest.skip(reason)
    out = tmp / "out" / "hello.elf"
    r = subprocess.run(["bash", str(BUILD_SCRIPT), str(out)], cwd="/",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.is_file()
    return out


def test_c_guest_loads(c_guest):
    img = load_elf(c_guest)
    assert img.virt_base == 0xC0000000
    assert img.entry == 0xC0000000             # guest.ld puts _start first
    assert img.guest_params == {"GUEST_OS": "linux", "XEN_VER": "2.0",
                                "VIRT_BASE": "0xC0000000", "LOADER": "generic"}
    assert img.vstart == 0xC0000000
    assert len(img.segments) == 2
    text, data = img.segments
    assert text.vaddr == 0xC0000000 and text.data[:1] == b"\xfc"   # cld
    assert b"hello from C guest: " in text.data       # rodata is in a loadable segment
    assert data.vaddr >= text.vaddr + text.memsz and data.vaddr % 4096 == 0
    assert data.memsz >= 8192                          # the static stack in .bss
    assert img.vend - img.virt_base < (1 << 20)


def test_build_script_default_output_and_cwd(tmp_path):
    if _gcc_m32_reason(tmp_path):
        pytest.skip("gcc -m32 unavailable")
    # Runs from an unrelated cwd; relative OUT is relative to that cwd.
    r = subprocess.run(["bash", str(BUILD_SCRIPT), "rel/hello.elf"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert load_elf(tmp_path / "rel" / "hello.elf").entry == 0xC0000000


def test_build_script_reports_missing_m32(tmp_path):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho \"fakecc: error: unrecognized command-line option '-m32'\" >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(BUILD_SCRIPT), str(tmp_path / "x.elf")],
                       env={"PATH": "/usr/bin:/bin", "CC": str(fake)},
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "cannot build 32-bit x86 code" in r.stderr
    assert not (tmp_path / "x.elf").exists()


def test_c_guest_runs_under_unicorn(c_guest):
    """Smoke-run the guest on a bare Unicorn core (flat segments, no paging):
    enough to check the entry path, the hypercall ABI use and the output. The
    real start-of-day (ring 1, page tables) is the machine's job."""
    unicorn = pytest.importorskip("unicorn")
    from unicorn import x86_const as X

    img = load_elf(c_guest)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    base = img.virt_base
    size = (img.vend - base + 0xFFF) & ~0xFFF
    si_va = base + size                       # start_info page after the image
    stack_top = si_va + 0x2000                 # bootstrap stack page
    uc.mem_map(base, size + 0x2000)
    for s in img.segments:
        uc.mem_write(s.vaddr, s.data + bytes(s.memsz - len(s.data)))
    cmdline = b"root=/dev/null console=xen"
    si = struct.pack("<II", 4321, 0) + bytes(56) + cmdline + b"\0"
    uc.mem_write(si_va, si)

    console = bytearray()
    calls = []

    def on_intr(uc, intno, _ud):
        assert intno == 0x82, f"unexpected interrupt {intno:#x}"
        eax, ebx, ecx, edx = (uc.reg_read(r) for r in
                              (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX,
                               X.UC_X86_REG_ECX, X.UC_X86_REG_EDX))
        calls.append((eax, ebx))
        ret = 0
        if eax == 18 and ebx == 0:            # console_io(CONSOLEIO_write, count, buf)
            console.extend(uc.mem_read(edx, ecx))
            ret = ecx
        elif eax == 6 and (ebx & 0xFF) == 2:  # sched_op(SCHEDOP_shutdown | reason<<8)
            uc.emu_stop()
        # clobber the argument registers as Xen may
        for r in (X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX,
                  X.UC_X86_REG_ESI, X.UC_X86_REG_EDI):
            uc.reg_write(r, 0xDEADBEEF)
        uc.reg_write(X.UC_X86_REG_EAX, ret)

    def on_cpuid(uc, _ud):
        leaf = uc.reg_read(X.UC_X86_REG_EAX)
        uc.reg_write(X.UC_X86_REG_EAX, 0x600 if leaf == 1 else 0)
        uc.reg_write(X.UC_X86_REG_EBX, (3 << 24) if leaf == 1 else 0)
        uc.reg_write(X.UC_X86_REG_ECX, 0)
        uc.reg_write(X.UC_X86_REG_EDX, 0)
        return True                            # skip the real CPUID

    uc.hook_add(unicorn.UC_HOOK_INTR, on_intr)
    uc.hook_add(unicorn.UC_HOOK_INSN, on_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
    uc.reg_write(X.UC_X86_REG_ESI, si_va)
    uc.reg_write(X.UC_X86_REG_ESP, stack_top)
    uc.emu_start(img.entry, 0, count=100_000)

    assert console.decode() == (
        "hello from C guest: root=/dev/null console=xen on pcpu 3\n"
        "nr_pages=4321\n")
    assert calls[-1] == (6, 2 | (0 << 8))      # shutdown, SHUTDOWN_poweroff


# --------------------------------------------------------------------------
# Hostile images (each refused in one line naming the file)
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Does it fit the domain? (smpxen.machine.images, before anything is created)
# --------------------------------------------------------------------------

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
