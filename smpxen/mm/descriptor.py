"""check_descriptor (xen/arch/x86/x86_32/mm.c): is a GDT/LDT descriptor safe to
let a guest use? No DPL-0 descriptors, no system descriptors but call gates into
valid guest code selectors, and code/data segments must stay below the hypervisor
(their limit is truncated at PAGE_OFFSET, as Xen does).

smpxen is stricter than Xen about call gates: one with DPL 2 or 3 is refused. A call
from ring 3 through such a gate into ring-1 code switches to the ring-1 stack the
TSS holds, and smpxen models no TSS: QEMU aborts the whole PCPU process there
("invalid tss"). Gates of DPL 1 (ring 1 calling ring 1) need no stack switch.

smpxen addition: the accessed bit of a present code/data descriptor is set here.
Descriptor tables are mapped read-only in the per-domain area, and a Unicorn core
that had to set the bit itself while loading a segment would write into that
read-only mapping (measured: the process dies)."""
from __future__ import annotations

from smpxen.arch.x86 import DESC_ACCESSED
from smpxen.xen.arch_x86_32 import (FIRST_RESERVED_GDT_ENTRY, FLAT_RING1_CS,
                                    LAST_RESERVED_GDT_ENTRY, PAGE_OFFSET, PAGE_SIZE)

_SEGMENT_P = 1 << 15
_SEGMENT_DPL = 3 << 13
_SEGMENT_S = 1 << 12
_SEGMENT_TYPE = 15 << 8
_SEGMENT_G = 1 << 23
_CALL_GATE = 0xC00


def valid_codesel(sel: int) -> bool:
    """VALID_CODESEL (asm-x86/desc.h): FLAT_RING1_CS, or an RPL-1 selector that is
    in the LDT or outside Xen's reserved GDT entries."""
    if sel == FLAT_RING1_CS:
        return True
    idx = sel >> 3
    return sel & 3 == 1 and (idx < FIRST_RESERVED_GDT_ENTRY or idx > LAST_RESERVED_GDT_ENTRY
                             or sel & 4 != 0)


def check_descriptor(lo: int, hi: int) -> tuple[int, int] | None:
    """The descriptor as it may be installed (limit truncated, accessed bit set),
    or None if it must be refused."""
    if not hi & _SEGMENT_P:
        return lo, hi                         # a not-present descriptor always faults
    if hi & _SEGMENT_DPL == 0:
        return None                           # DPL 0 would give ring-0 privilege
    if not hi & _SEGMENT_S:
        if hi & _SEGMENT_TYPE != _CALL_GATE:  # only call gates among system descriptors
            return None
        if not valid_codesel(lo >> 16) or hi & 0xE0 or (hi & _SEGMENT_DPL) >> 13 > 1:
            return None
        return lo, hi
    base = (hi & 0xFF000000) | ((hi & 0xFF) << 16) | (lo >> 16)
    if base >= PAGE_OFFSET - PAGE_SIZE:
        return None
    limit = ((hi & 0xF0000) | (lo & 0xFFFF)) + 1
    if hi & _SEGMENT_G:
        limit <<= 12
    if base + limit > PAGE_OFFSET:
        limit = PAGE_OFFSET - base
        if hi & _SEGMENT_G:
            limit >>= 12
        limit -= 1
        lo = (lo & ~0xFFFF) | (limit & 0xFFFF)
        hi = (hi & ~0xF0000) | (limit & 0xF0000)
    return lo, hi | (DESC_ACCESSED << 8)
