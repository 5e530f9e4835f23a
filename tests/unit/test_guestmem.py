"""Guest-virtual memory access (smpxen/hv/guestmem.py) against a reference page walk."""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from smpxen.hv.guestmem import GuestFault, GuestMemory
from smpxen.shm.ram import MachineRAM


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 1023), st.booleans(), st.booleans()),
                max_size=40),
       st.integers(0, 0xFFFFFFFF), st.integers(1, 9000), st.booleans())
def test_guestmem_matches_a_reference_walk(mappings, va, n, write):
    """GuestMemory agrees with a straightforward model of two-level paging,
    including faults for absent, read-only and hypervisor-area addresses."""
    frames = 64
    ram = MachineRAM(*_anon(frames))
    pd = 1
    table = {}
    ram.write(pd << 12, bytes(4096))
    l1 = 2
    ram.write(l1 << 12, bytes(4096))
    struct.pack_into("<I", ram.mem, (pd << 12) + (va >> 22) * 4, (l1 << 12) | 3)
    for slot, frame, present, rw in mappings:
        mfn = 3 + frame % (frames - 3)
        pte = (mfn << 12) | (1 if present else 0) | (2 if rw else 0)
        struct.pack_into("<I", ram.mem, (l1 << 12) + slot * 4, pte)
        table[slot] = (mfn, present, rw)
    mem = GuestMemory(ram, frames)
    mem.cr3 = pd << 12

    def expect(addr):
        if addr >= 0xFC000000 or (addr >> 22) != (va >> 22):
            return None
        mfn, present, rw = table.get((addr >> 12) & 1023, (0, False, False))
        if not present or (write and not rw):
            return None
        return (mfn << 12) | (addr & 0xFFF)
    addrs = range(va, min(va + n, 1 << 32))
    ok = va + n <= 0xFC000000 and all(expect(a) is not None for a in addrs[::4096]) \
        and expect(min(va + n, 1 << 32) - 1) is not None
    try:
        if write:
            mem.write(va, b"\xAB" * n)
        else:
            mem.read(va, n)
        got = True
    except GuestFault:
        got = False
    assert got == ok
    ram.close()


def _anon(frames):
    import os
    fd = os.memfd_create("smpxen-test")
    os.ftruncate(fd, frames * 4096)
    return fd, frames * 4096
