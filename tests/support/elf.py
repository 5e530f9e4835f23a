"""ELF32 images crafted byte by byte, for the loader's tests: well-formed ones and
every malformation the loader must refuse."""
from __future__ import annotations

import struct

GUEST_STRING = "GUEST_OS=linux,XEN_VER=2.0,VIRT_BASE=0xC0000000,LOADER=generic"
PF_X, PF_W, PF_R = 1, 2, 4


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
