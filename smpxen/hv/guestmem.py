"""Hypervisor access to a running domain's virtual memory (Xen's copy_from_user /
copy_to_user): walk the domain's page tables in machine RAM, honour present and
writable bits (Xen runs with CR0.WP), and refuse anything at or above
HYPERVISOR_VIRT_START. Any failure is a GuestFault, which hypercalls turn into
-EFAULT: a wild guest pointer never reaches the PCPU. A page directory entry that
is not present may be the hypervisor's own doing (a writable page table
disconnected): `reconnect(va)` gets a chance to restore it, as Xen's page-fault
handler does for the hypervisor's accesses, before the walk is given up."""
from __future__ import annotations

import struct

from smpxen.xen.arch_x86_32 import HYPERVISOR_VIRT_START, _PAGE_PRESENT, _PAGE_RW

_u32 = struct.Struct("<I")


class GuestFault(Exception):
    def __init__(self, va: int, write: bool, why: str):
        super().__init__(f"{'write' if write else 'read'} of guest address {va:#010x}: {why}")
        self.va = va
        self.write = write


class GuestMemory:
    def __init__(self, ram, nr_frames: int, reconnect=None):
        self.mem = ram.mem
        self.nr_frames = nr_frames
        self.cr3 = 0          # machine address of the current page directory
        self.reconnect = reconnect  # va -> bool: restored a not-present PDE (pcpu/paging.py)

    def translate(self, va: int, write: bool) -> int:
        """Machine address of guest virtual address va."""
        if va >= HYPERVISOR_VIRT_START or va < 0:
            raise GuestFault(va, write, "outside the guest's address space")
        pde = _u32.unpack_from(self.mem, (self.cr3 & ~0xFFF) + ((va >> 22) << 2))[0]
        if not pde & _PAGE_PRESENT:
            if self.reconnect is not None and self.reconnect(va):
                return self.translate(va, write)
            raise GuestFault(va, write, "page directory entry not present")
        if write and not pde & _PAGE_RW:
            raise GuestFault(va, write, "read-only (page directory)")
        l1 = pde >> 12
        if l1 >= self.nr_frames:
            raise GuestFault(va, write, "page table outside RAM")
        pte = _u32.unpack_from(self.mem, (l1 << 12) + (((va >> 12) & 1023) << 2))[0]
        if not pte & _PAGE_PRESENT:
            raise GuestFault(va, write, "page not present")
        if write and not pte & _PAGE_RW:
            raise GuestFault(va, write, "read-only page")
        mfn = pte >> 12
        if mfn >= self.nr_frames:
            raise GuestFault(va, write, "frame outside RAM")
        return (mfn << 12) | (va & 0xFFF)

    def read(self, va: int, n: int) -> bytes:
        if n < 0 or va + n > HYPERVISOR_VIRT_START:
            raise GuestFault(va, False, "range outside the guest's address space")
        out = []
        while n > 0:
            chunk = min(n, 0x1000 - (va & 0xFFF))
            ma = self.translate(va, False)
            out.append(self.mem[ma:ma + chunk])
            va += chunk
            n -= chunk
        return b"".join(out)

    def write(self, va: int, data: bytes) -> None:
        n = len(data)
        if va + n > HYPERVISOR_VIRT_START:
            raise GuestFault(va, True, "range outside the guest's address space")
        # Translate every page first so a fault leaves guest memory untouched.
        spans, off = [], 0
        while off < n:
            chunk = min(n - off, 0x1000 - ((va + off) & 0xFFF))
            spans.append((self.translate(va + off, True), off, chunk))
            off += chunk
        for ma, o, chunk in spans:
            self.mem[ma:ma + chunk] = data[o:o + chunk]

    def read_u32(self, va: int) -> int:
        if va & 3 == 0:
            return _u32.unpack_from(self.mem, self.translate(va, False))[0]
        return _u32.unpack(self.read(va, 4))[0]

    def write_u32(self, va: int, value: int) -> None:
        if va & 3 == 0:
            _u32.pack_into(self.mem, self.translate(va, True), value & 0xFFFFFFFF)
        else:
            self.write(va, _u32.pack(value & 0xFFFFFFFF))

    def read_cstring(self, va: int, limit: int) -> bytes:
        data = self.read(va, limit)
        end = data.find(b"\0")
        return data if end < 0 else data[:end]
