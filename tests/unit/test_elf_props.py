"""Property: whatever bytes a kernel file holds, load_elf returns an image the
builder can place (every check of smpxen.guests.elf holds) or raises ElfLoadError
with a one-line message naming the file. Nothing else escapes."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpxen.guests.elf import HYPERVISOR_VIRT_START, MAX_IMAGE_BYTES, ElfLoadError, load_elf
from smpxen.guests.image import PAGE_SIZE, KernelImage
from support.elf import PF_W, PF_X, make_elf

VALID = make_elf(segments=[(0xC0000000, bytes(range(48)), 0x2000, PF_X),
                           (0xC0002000, b"data", 0x1000, PF_W)],
                 entry=0xC0000010)

EDGE_WORDS = [0, 1, 2, 0x20, 0x28, 0x34, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE,
              0xC0000000, 0xBFFFF000, 0xFBFFF000, 0xFC000000, 0xFFFFF000, MAX_IMAGE_BYTES,
              len(VALID), len(VALID) - 1, len(VALID) + 1]
words = st.one_of(st.sampled_from(EDGE_WORDS), st.integers(0, 0xFFFFFFFF))
halves = st.one_of(st.sampled_from([0, 1, 2, 3, 0x20, 0x28, 0xFF00, 0xFFFF]),
                   st.integers(0, 0xFFFF))


def _workfile(tmp_path_factory):
    d = tmp_path_factory.getbasetemp() / "elf-props"
    d.mkdir(exist_ok=True)
    return d / "k.elf"


def check(path, data: bytes) -> KernelImage | None:
    path.write_bytes(data)
    try:
        img = load_elf(path)
    except ElfLoadError as e:
        msg = str(e)
        assert "\n" not in msg and "\r" not in msg
        assert msg.startswith(f"{path}: ") and len(msg) > len(f"{path}: ")
        return None
    # What the builder relies on.
    segs = sorted(img.segments, key=lambda s: s.vaddr)
    assert segs and img.virt_base % PAGE_SIZE == 0
    assert img.virt_base <= segs[0].vaddr
    for s in segs:
        assert 0 < s.memsz and len(s.data) <= s.memsz
        assert s.vaddr + s.memsz <= HYPERVISOR_VIRT_START
    for a, b in zip(segs, segs[1:]):
        assert a.vaddr + a.memsz <= b.vaddr
    assert sum(s.memsz for s in segs) <= MAX_IMAGE_BYTES
    assert img.vend - img.virt_base <= MAX_IMAGE_BYTES
    assert any(s.vaddr <= img.entry < s.vaddr + s.memsz for s in segs)
    return img


def test_valid_base_image_loads(tmp_path_factory):
    assert check(_workfile(tmp_path_factory), VALID) is not None


@st.composite
def mutated(draw):
    """The valid image with, each at random, byte flips, 32-bit words poked anywhere
    (header fields, program and section headers, the guest string) and a cut."""
    # Structure from a seeded Random: hypothesis's own draws favour 0 and small values.
    rnd = draw(st.randoms(use_true_random=True))
    buf = bytearray(VALID)
    for _ in range(rnd.choice([0, 0, 1, 2, 5])):
        buf[rnd.randrange(len(buf))] = draw(st.integers(0, 255))
    for _ in range(rnd.choice([0, 1, 1, 2])):
        struct.pack_into("<I", buf, rnd.randrange(len(buf) // 4) * 4, draw(words))
    if rnd.random() < 0.3:
        buf = buf[:rnd.randrange(len(buf))]
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_image(tmp_path_factory, data):
    check(_workfile(tmp_path_factory), data)


@st.composite
def crafted(draw):
    """An ELF built from header fields that are each laid out right or, at random,
    anything: program headers that load plausible or wild ranges from the payload,
    section headers that may or may not name a __xen_guest section holding a
    random or almost right guest string."""
    rnd = draw(st.randoms(use_true_random=True))
    wild_rate = rnd.choice([0.0, 0.02, 0.1])

    def field(right, wild=words):
        return draw(wild) if rnd.random() < wild_rate else right

    payload = draw(st.binary(min_size=1, max_size=64))
    guest_text = rnd.choice([
        "GUEST_OS=linux,XEN_VER=2.0", "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0xC0000000",
        "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0", "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0x",
        "XEN_VER=2.0,LOADER=generic,VIRT_BASE=0xFFFFFFFFFFFFFFFFFFFF",
        "LOADER=generic,XEN_VER=2.0,VIRT_BASE=0xC0001000", draw(st.text(max_size=40))])
    strtab = b"\0.shstrtab\0__xen_guest\0"
    gbytes = guest_text.encode("utf-8") + b"\0"
    nph = rnd.choice([0, 1, 2, 2, 3])
    phoff = 52
    strtab_off = phoff + 32 * nph
    guest_off = strtab_off + len(strtab)
    payload_off = guest_off + len(gbytes)
    shoff = payload_off + len(payload)
    base = rnd.choice([0xC0000000, 0xC0000000, 0xC0000000, 0, 0xFBFFF000, 0xBFFFF000])
    phdrs, va, ends = [], base, []
    for _ in range(nph):
        filesz = rnd.randrange(len(payload) + 1)
        memsz = filesz + rnd.choice([0, 1, 0x1000, 0x10000])
        flags = rnd.choice([PF_X, PF_W, PF_X | PF_W, 4])
        phdrs.append((field(1, st.sampled_from([0, 2, 6])), field(payload_off), field(va),
                      field(va), field(filesz), field(memsz), field(flags), field(0x1000)))
        ends.append(va + memsz)
        va += rnd.choice([memsz, (memsz + 0xFFF) & ~0xFFF, 0x1000, 0x100000])
    # At a segment start, just past the first segment (a gap if the next starts later).
    entry = field(rnd.choice([base, base + 1, ends[0] if ends else base,
                              base + rnd.randrange(0x2000)]))
    extra = [(draw(st.integers(0, 40)), rnd.choice([0, 1, 3, 8]), 0, 0, draw(words), draw(words))
             for _ in range(rnd.choice([0, 0, 1, 2]))]
    sections = [(0, 0, 0, 0, 0, 0), (1, 3, 0, 0, field(strtab_off), field(len(strtab))),
                (field(11, st.integers(0, 30)), 1, 0, 0, field(guest_off), field(len(gbytes)))]
    sections += extra
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    ehdr = struct.pack("<16sHHIIIIIHHHHHH", ident, field(2, st.integers(0, 4)), 3, 1, entry,
                       field(phoff), field(shoff), 0, 52, field(32, halves), nph,
                       field(40, halves), len(sections), field(1, halves))
    out = bytearray(ehdr)
    for p in phdrs:
        out += struct.pack("<IIIIIIII", *p)
    out += strtab + gbytes + payload
    for name, typ, flags, addr, off, size in sections:
        out += struct.pack("<IIIIIIIIII", name, typ, flags, addr, off, size, 0, 0, 1, 0)
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=crafted())
def test_random_headers(tmp_path_factory, data):
    check(_workfile(tmp_path_factory), data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, data):
    check(_workfile(tmp_path_factory), b"\x7fELF" + data)
