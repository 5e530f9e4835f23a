"""x86-32 architectural encodings: segment descriptors, exception vectors, EFLAGS."""
from __future__ import annotations

import struct

# Exception vectors
DE, DB, NMI, BP, OF, BR, UD, NM, DF, CSO, TS, NP, SS_, GP, PF, MF, AC, MC, XM = range(19)
EXCEPTION_NAMES = ["#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
                   "#BR bound", "#UD invalid opcode", "#NM device not available",
                   "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
                   "#NP segment not present", "#SS stack fault", "#GP general protection",
                   "#PF page fault", "reserved", "#MF x87 error", "#AC alignment check",
                   "#MC machine check", "#XM SIMD exception"]
# Vectors for which the CPU pushes an error code
HAS_ERROR_CODE = frozenset({DF, TS, NP, SS_, GP, PF, AC})

# EFLAGS
EFLAGS_CF = 1 << 0
EFLAGS_RESERVED1 = 1 << 1
EFLAGS_TF = 1 << 8
EFLAGS_IF = 1 << 9
EFLAGS_DF = 1 << 10
EFLAGS_IOPL = 3 << 12
EFLAGS_NT = 1 << 14
EFLAGS_RF = 1 << 16
EFLAGS_VM = 1 << 17
# What Xen strips from EFLAGS in a bounce frame (entry.S: andl $0xfffcbeff)
BOUNCE_EFLAGS_MASK = 0xFFFCBEFF

# CR0
CR0_PE = 1 << 0
CR0_ET = 1 << 4
CR0_TS = 1 << 3
CR0_WP = 1 << 16
CR0_PG = 1 << 31

# Descriptor access byte bits
DESC_ACCESSED = 0x01
DESC_S = 0x10            # code/data (not system)
DESC_CODE = 0x08
DESC_PRESENT = 0x80


def exception_name(vector: int) -> str:
    if 0 <= vector < len(EXCEPTION_NAMES):
        return EXCEPTION_NAMES[vector]
    return f"vector {vector:#x}"


def make_segment(base: int, limit_pages: int, access: int) -> bytes:
    """A 32-bit, 4 KiB-granular code/data descriptor. The accessed bit is always set:
    descriptor tables are mapped read-only, and a CPU that had to set it would write."""
    access |= DESC_ACCESSED
    return struct.pack("<HHBBBB", limit_pages & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF,
                       access, 0xC0 | ((limit_pages >> 16) & 0xF), (base >> 24) & 0xFF)


def split_descriptor(lo: int, hi: int) -> dict:
    """Decode the two 32-bit words of a descriptor."""
    base = ((lo >> 16) & 0xFFFF) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    if hi & (1 << 23):
        limit = (limit << 12) | 0xFFF
    access = (hi >> 8) & 0xFF
    return {"base": base, "limit": limit, "access": access, "dpl": (access >> 5) & 3,
            "present": bool(access & DESC_PRESENT), "system": not (access & DESC_S),
            "type": access & 0xF}
