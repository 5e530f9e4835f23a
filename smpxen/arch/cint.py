"""C integer arithmetic on x86-32, for code that reproduces Xen's C (the BVT
scheduler's virtual times, the time models' scaled products): truncation to the
unsigned widths and two's-complement sign extension."""
from __future__ import annotations

M32 = 0xFFFF_FFFF
M64 = 0xFFFF_FFFF_FFFF_FFFF


def u32(x: int) -> int:
    """Truncate to C ``u32``."""
    return x & M32


def u64(x: int) -> int:
    """Truncate to C ``u64``."""
    return x & M64


def s32(x: int) -> int:
    """Truncate to C ``s32`` (two's complement)."""
    x &= M32
    return x - (1 << 32) if x & 0x8000_0000 else x


def s64(x: int) -> int:
    """Truncate to C ``s64`` / ``s_time_t``."""
    x &= M64
    return x - (1 << 64) if x & (1 << 63) else x
