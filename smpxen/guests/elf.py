"""ELF32 loader for Xen 2.0 x86_32 guest kernels.

Mirrors ``parseelfimage`` in Xen 2.0.0's ``xen/common/elf.c`` (tag RELEASE-2.0.0,
commit 5c70ae783d31; the domU builder ``tools/libxc/xc_linux_build.c`` has the
same logic), plus the checks Xen makes later in the domain builder and the
bounds a simulator needs against hostile files:

* the image must have a section named ``__xen_guest``; its NUL-terminated
  string is comma-separated ``KEY=VALUE`` items and bare flags;
* acceptance is Xen's own test, a substring search of that string: it must
  contain ``LOADER=generic`` or ``GUEST_OS=linux``, and ``XEN_VER=2.0``
  (so any image Xen 2.0 accepts is accepted here);
* loadable segments are ``PT_LOAD`` entries with the W or X flag, placed at
  ``p_vaddr``. A read-only ``PT_LOAD`` is ignored, as Xen 2.0 ignores it, so a
  guest must keep its read-only data in an X or W segment;
* virt_base is ``VIRT_BASE`` (parsed like ``simple_strtoul(s, 0)``: ``0x`` hex,
  leading ``0`` octal, else decimal); without it Xen 2.0 uses the lowest
  loadable ``p_vaddr`` unchanged (``dsi->v_start = kernstart``), *not* rounded
  down to 4 MiB as the start-of-day comment in public/xen.h suggests, and the
  builder requires it to be page-aligned. A VIRT_BASE value that is not wholly
  a number is refused (simple_strtoul would stop at the first bad character);
* the entry point must lie inside [lowest vaddr, highest end) (and here also
  inside one of the loaded segments, not in a gap between them).

Stricter than Xen (which trusts its input): ELF32/LSB/EM_386/ET_EXEC are
required; every header, section and segment must lie inside the file;
segments must not overlap, must not start below virt_base, and must end at or
below HYPERVISOR_VIRT_START (0xFC000000); filesz must not exceed memsz; and the
total memsz, and the span from virt_base to the end of the image, are capped at
256 MiB. The file is memory-mapped, so only the loadable bytes are copied.
"""
from __future__ import annotations

import mmap
import os
import struct
import sys

from .image import PAGE_SIZE, KernelImage, Segment

__all__ = ["ElfLoadError", "load_elf", "parse_guest_string", "MAX_IMAGE_BYTES",
           "HYPERVISOR_VIRT_START"]

HYPERVISOR_VIRT_START = 0xFC000000      # arch-x86_32.h
MAX_IMAGE_BYTES = 256 << 20             # cap on total memsz and on the image span

# ELF constants (System V ABI, i386 supplement)
ELFMAG = b"\x7fELF"
ELFCLASS32 = 1
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_EXEC = 2
EM_386 = 3
PT_LOAD = 1
PF_X = 1
PF_W = 2
PF_R = 4
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00

_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")      # Elf32_Ehdr, 52 bytes
_PHDR = struct.Struct("<IIIIIIII")              # Elf32_Phdr, 32 bytes
_SHDR = struct.Struct("<IIIIIIIIII")            # Elf32_Shdr, 40 bytes

_ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_EM_NAMES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 40: "EM_ARM", 62: "EM_X86_64",
             183: "EM_AARCH64", 243: "EM_RISCV"}


class ElfLoadError(Exception):
    """The file is not a loadable Xen 2.0 x86_32 guest. ``str()`` is one line:
    ``<path>: <problem>``."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def parse_guest_string(s: str) -> dict[str, str]:
    """Split a ``__xen_guest`` string into ``{KEY: VALUE}``; bare flags map to
    ``""``. Empty items are skipped; the first occurrence of a key wins (as
    Xen's ``strstr`` finds the first)."""
    params: dict[str, str] = {}
    for item in s.split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        params.setdefault(key, value if sep else "")
    return params


def _strtoul(text: str) -> int | None:
    """``simple_strtoul(text, &end, 0)`` for a whole item value; None if the
    value is not entirely a number (Xen would silently stop at the first bad
    character; we refuse instead)."""
    t = text
    if t[:2] in ("0x", "0X"):
        base, digits = 16, t[2:]
    elif t[:1] == "0" and len(t) > 1:
        base, digits = 8, t[1:]
    else:
        base, digits = 10, t
    if not digits:
        return None
    try:
        return int(digits, base) if digits.isalnum() else None
    except ValueError:
        return None


def _quote(s: str, limit: int = 120) -> str:
    r = repr(s)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _fmt(x: int) -> str:
    return f"{x:#010x}"


def load_elf(path) -> KernelImage:
    """Parse and validate the ELF32 i386 guest kernel at ``path``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ElfLoadError(name, "file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _load(name, buf, size)
    except ElfLoadError:
        raise
    except (OSError, ValueError) as e:
        raise ElfLoadError(name, f"cannot read file: {getattr(e, 'strerror', None) or e}") from None


def _load(name: str, buf, size: int) -> KernelImage:
    def fail(problem: str):
        raise ElfLoadError(name, problem)

    # ---- ELF header -------------------------------------------------------
    if size < 4 or buf[0:4] != ELFMAG:
        fail("not an ELF file (bad magic)")
    if size < _EHDR.size:
        fail(f"truncated ELF header ({size} bytes, need {_EHDR.size})")
    (ident, e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, _e_flags,
     _e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx) = \
        _EHDR.unpack_from(buf, 0)
    if ident[4] != ELFCLASS32:
        what = "ELFCLASS64 (64-bit)" if ident[4] == 2 else f"class {ident[4]}"
        fail(f"wrong ELF class: {what}, need ELFCLASS32")
    if ident[5] != ELFDATA2LSB:
        what = "big-endian" if ident[5] == 2 else f"data encoding {ident[5]}"
        fail(f"wrong ELF byte order: {what}, need little-endian (ELFDATA2LSB)")
    if ident[6] != EV_CURRENT:
        fail(f"unsupported ELF version {ident[6]}")
    if e_machine != EM_386:
        fail(f"wrong machine {_EM_NAMES.get(e_machine, e_machine)}, need EM_386 (i386)")
    if e_type != ET_EXEC:
        fail(f"wrong ELF type {_ET_NAMES.get(e_type, e_type)}, need ET_EXEC "
             "(a statically linked executable)")

    # ---- header tables inside the file -------------------------------------
    if e_phnum == 0:
        fail("no program headers")
    if e_phentsize < _PHDR.size:
        fail(f"bad e_phentsize {e_phentsize} (need >= {_PHDR.size})")
    if e_phoff + e_phnum * e_phentsize > size:
        fail(f"truncated file: program headers end at {e_phoff + e_phnum * e_phentsize}, "
             f"file has {size} bytes")
    if e_shnum == 0 or e_shoff == 0:
        fail("no section headers, so no '__xen_guest' section "
             "(not a Xen-ELF image)")
    if e_shentsize < _SHDR.size:
        fail(f"bad e_shentsize {e_shentsize} (need >= {_SHDR.size})")
    if e_shoff + e_shnum * e_shentsize > size:
        fail(f"truncated file: section headers end at {e_shoff + e_shnum * e_shentsize}, "
             f"file has {size} bytes")

    # ---- sections: find __xen_guest ---------------------------------------
    if e_shstrndx == SHN_UNDEF:
        fail("no section-header string table (e_shstrndx is SHN_UNDEF)")
    if e_shstrndx >= e_shnum:
        fail(f"bad e_shstrndx {e_shstrndx} (only {e_shnum} sections)")

    def shdr(i):
        return _SHDR.unpack_from(buf, e_shoff + i * e_shentsize)

    _n, _t, _f, _a, str_off, str_size, *_ = shdr(e_shstrndx)
    if str_off + str_size > size:
        fail("truncated file: section-header string table extends beyond end of file")

    def sec_name(off: int) -> bytes:
        if off >= str_size:
            return b""
        end = buf.find(b"\0", str_off + off, str_off + str_size)
        return buf[str_off + off: end if end >= 0 else str_off + str_size]

    guestinfo = None
    for i in range(e_shnum):
        sh_name, _t, _f, _a, sh_offset, sh_size, *_ = shdr(i)
        if sec_name(sh_name) != b"__xen_guest":
            continue
        if sh_offset + sh_size > size:
            fail("truncated file: '__xen_guest' section extends beyond end of file")
        raw = buf[sh_offset: sh_offset + sh_size]
        nul = raw.find(b"\0")
        raw = raw if nul < 0 else raw[:nul]
        guestinfo = raw.decode("latin-1")      # Xen treats it as bytes
        break
    if guestinfo is None:
        fail("not a Xen-ELF image: '__xen_guest' section not found")
    if "LOADER=generic" not in guestinfo and "GUEST_OS=linux" not in guestinfo:
        fail(f"__xen_guest needs LOADER=generic or GUEST_OS=linux "
             f"(Xen only loads generic-loader or Linux images): {_quote(guestinfo)}")
    if "XEN_VER=2.0" not in guestinfo:
        fail(f"__xen_guest needs XEN_VER=2.0 (image not built for Xen 2.0): "
             f"{_quote(guestinfo)}")
    params = parse_guest_string(guestinfo)

    # ---- loadable segments --------------------------------------------------
    loads = []
    total = 0
    for i in range(e_phnum):
        (p_type, p_offset, p_vaddr, _p_paddr, p_filesz, p_memsz, p_flags,
         _p_align) = _PHDR.unpack_from(buf, e_phoff + i * e_phentsize)
        if p_type != PT_LOAD or not (p_flags & (PF_W | PF_X)):
            continue                    # is_loadable_phdr() in elf.c
        if p_filesz > p_memsz:
            fail(f"segment {i} at {_fmt(p_vaddr)}: filesz {p_filesz:#x} > memsz {p_memsz:#x}")
        if p_offset + p_filesz > size:
            fail(f"truncated file: segment {i} at {_fmt(p_vaddr)} needs file bytes "
                 f"{p_offset:#x}..{p_offset + p_filesz:#x}, file has {size:#x}")
        if p_memsz == 0:
            continue                    # loads nothing
        end = p_vaddr + p_memsz
        if end > HYPERVISOR_VIRT_START:
            wraps = " and wraps past 4 GiB" if end > 1 << 32 else ""
            fail(f"segment {i} {_fmt(p_vaddr)}..{end:#x} reaches the hypervisor "
                 f"area at {_fmt(HYPERVISOR_VIRT_START)} (HYPERVISOR_VIRT_START){wraps}")
        total += p_memsz
        if total > MAX_IMAGE_BYTES:
            fail(f"loadable segments total more than {MAX_IMAGE_BYTES >> 20} MiB of memory")
        loads.append((p_vaddr, p_memsz, p_offset, p_filesz, i))
    if not loads:
        fail("no loadable segments (PT_LOAD with W or X flag)")
    loads.sort()
    for (va, ms, _o, _f, i), (vb, _m, _o2, _f2, j) in zip(loads, loads[1:]):
        if va + ms > vb:
            fail(f"segments {i} ({_fmt(va)}..{_fmt(va + ms)}) and {j} "
                 f"(starting {_fmt(vb)}) overlap")
    kernstart = loads[0][0]
    kernend = max(va + ms for va, ms, *_ in loads)

    # ---- virt_base ----------------------------------------------------------
    if "VIRT_BASE" in params:
        vb_text = params["VIRT_BASE"]
        virt_base = _strtoul(vb_text)
        if virt_base is None:
            fail(f"bad VIRT_BASE value {_quote(vb_text)} in __xen_guest")
        if virt_base >= HYPERVISOR_VIRT_START:
            fail(f"VIRT_BASE {_fmt(virt_base)} is at or above "
                 f"HYPERVISOR_VIRT_START {_fmt(HYPERVISOR_VIRT_START)}")
    else:
        virt_base = kernstart           # elf.c: dsi->v_start = kernstart
    if virt_base % PAGE_SIZE:
        fail(f"virt_base {_fmt(virt_base)} is not page-aligned "
             "(guest OS must load to a page boundary)")
    if kernstart < virt_base:
        i = loads[0][4]
        fail(f"segment {i} at {_fmt(kernstart)} is below VIRT_BASE {_fmt(virt_base)}")
    if kernend - virt_base > MAX_IMAGE_BYTES:
        fail(f"image spans {_fmt(virt_base)}..{_fmt(kernend)}, more than "
             f"{MAX_IMAGE_BYTES >> 20} MiB")

    # ---- entry ---------------------------------------------------------------
    if not (kernstart <= e_entry < kernend):
        fail(f"entry point {_fmt(e_entry)} is outside the loaded image "
             f"{_fmt(kernstart)}..{_fmt(kernend)}")
    if not any(va <= e_entry < va + ms for va, ms, *_ in loads):
        # Xen only checks the range; a gap between segments holds zeroes.
        fail(f"entry point {_fmt(e_entry)} is in no loaded segment (a gap in "
             f"{_fmt(kernstart)}..{_fmt(kernend)})")

    segments = [Segment(vaddr=va, data=bytes(buf[off: off + fs]), memsz=ms)
                for va, ms, off, fs, _i in loads]
    return KernelImage(name=name, segments=segments, entry=e_entry,
                       virt_base=virt_base, guest_params=params)


def main(argv: list[str] | None = None) -> int:
    """``python -m smpxen.guests.elf FILE...``: validate and summarise."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m smpxen.guests.elf FILE.elf...", file=sys.stderr)
        return 2
    rc = 0
    for p in argv:
        try:
            img = load_elf(p)
        except ElfLoadError as e:
            print(f"error: {e}", file=sys.stderr)
            rc = 1
            continue
        print(f"{img.name}: entry {_fmt(img.entry)} virt_base {_fmt(img.virt_base)} "
              f"image {_fmt(img.vstart)}..{_fmt(img.vend)}")
        for s in img.segments:
            print(f"  segment {_fmt(s.vaddr)} filesz {len(s.data):#x} memsz {s.memsz:#x}")
        print(f"  __xen_guest: {img.guest_params}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
