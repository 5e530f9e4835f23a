"""Shared set-up for the probes (not a probe itself): one bare x86-32 Unicorn core in
protected mode with paging, over 4 MiB of RAM that other processes can map too.

Physical = virtual for the first 4 MiB (one identity L1, user + writable); the GDT has
flat code/data segments for rings 0, 1 and 3 (accessed bit preset) and room for a
probe's own entries from index 7 up. A ring is entered the way smpxen does it
(docs/design.md, "Entering a ring"): from ring 0, write an iret frame on the ring-0
stack and run an `iretd`."""
from __future__ import annotations

import ctypes
import mmap
import os
import struct

from keystone import KS_ARCH_X86, KS_MODE_32, Ks
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as R

RAM_BYTES = 4 << 20
GDT, PD, PT, TRAMPOLINE, STACK0_TOP = 0x1000, 0x2000, 0x3000, 0x4000, 0x6000
CODE, DATA, STACK_TOP, EXIT = 0x10000, 0x20000, 0x30000, 0x3FFF0
GDT_ENTRIES = 16
RING0_CS, RING0_DS = 0x08, 0x10
RING_SELECTORS = {0: (RING0_CS, RING0_DS), 1: (0x19, 0x21), 3: (0x2B, 0x33)}
PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D = 1, 2, 4, 0x20, 0x40
CR0_BOOT = 0x80010031          # PG | WP | ET | PE (and NE)
IRET_FRAME = struct.Struct("<5I")  # eip, cs, eflags, esp, ss
EFLAGS_IF = 0x202

_ks = Ks(KS_ARCH_X86, KS_MODE_32)


def asm(src: str, addr: int) -> bytes:
    return bytes(_ks.asm(src, addr)[0])


def descriptor(base: int, limit: int, access: int, pages: bool = True) -> bytes:
    """A 32-bit code/data descriptor; limit in 4 KiB pages if `pages`, else bytes."""
    flags = 0xC if pages else 0x4
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF,
                       access, (flags << 4) | ((limit >> 16) & 0xF), base >> 24)


def shared_ram(size: int = RAM_BYTES) -> tuple[int, mmap.mmap]:
    """An anonymous shared-memory file (memfd) and a MAP_SHARED mapping of it."""
    fd = os.memfd_create("smpxen-probe")
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


class Bare32:
    def __init__(self, ram: mmap.mmap | None = None, fd: int | None = None, format_ram: bool = True):
        if ram is None:
            fd, ram = shared_ram()
        self.fd, self.ram = fd, ram
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self._anchor = ctypes.c_char.from_buffer(ram)
        uc.mem_map_ptr(0, len(ram), UC_PROT_ALL, ctypes.addressof(self._anchor))
        if format_ram:
            gdt = bytes(8) + b"".join(descriptor(0, 0xFFFFF, access) for access in
                                      (0x9B, 0x93, 0xBB, 0xB3, 0xFB, 0xF3))
            ram[GDT:GDT + len(gdt)] = gdt
            ram[PD:PD + 4] = struct.pack("<I", PT | PTE_P | PTE_RW | PTE_US)
            ram[PT:PT + 4096] = struct.pack("<1024I", *((i << 12) | PTE_P | PTE_RW | PTE_US
                                                        for i in range(1024)))
            ram[TRAMPOLINE:TRAMPOLINE + 1] = asm("iretd", TRAMPOLINE)
        uc.reg_write(R.UC_X86_REG_GDTR, (0, GDT, GDT_ENTRIES * 8 - 1, 0))
        uc.reg_write(R.UC_X86_REG_CR3, PD)
        uc.reg_write(R.UC_X86_REG_CR0, CR0_BOOT)
        for reg, sel in ((R.UC_X86_REG_CS, RING0_CS), (R.UC_X86_REG_SS, RING0_DS),
                         (R.UC_X86_REG_DS, RING0_DS), (R.UC_X86_REG_ES, RING0_DS)):
            uc.reg_write(reg, sel)
        uc.reg_write(R.UC_X86_REG_ESP, STACK0_TOP)
        self.ring0 = uc.context_save()
        self.seen: list[tuple[int, int, int]] = []    # (vector, eip, cpl) per interrupt
        self.stop_on_interrupt = True
        uc.hook_add(UC_HOOK_INTR, self._interrupt)

    def _interrupt(self, uc, vector, _user):
        self.seen.append((vector, self.reg(R.UC_X86_REG_EIP), self.reg(R.UC_X86_REG_CS) & 3))
        if self.stop_on_interrupt:
            uc.emu_stop()

    # ---- memory (physical addresses) ---------------------------------------------
    def load(self, addr: int, src: str) -> int:
        """Assemble src at addr into RAM; returns the address just past it."""
        code = asm(src, addr)
        self.ram[addr:addr + len(code)] = code
        return addr + len(code)

    def u32(self, addr: int) -> int:
        return struct.unpack_from("<I", self.ram, addr)[0]

    def set_u32(self, addr: int, value: int) -> None:
        struct.pack_into("<I", self.ram, addr, value)

    def set_pte(self, va: int, pa: int, flags: int) -> None:
        self.set_u32(PT + (va >> 12) * 4, pa | flags)

    def set_gdt_entry(self, index: int, desc: bytes) -> None:
        self.ram[GDT + index * 8:GDT + index * 8 + 8] = desc

    # ---- registers and runs ----------------------------------------------------
    def reg(self, reg: int) -> int:
        return self.uc.reg_read(reg)

    def enter(self, ring: int, eip: int, esp: int = STACK_TOP) -> int:
        """From the ring-0 state: an iret frame on the ring-0 stack; returns where to start."""
        self.uc.context_restore(self.ring0)
        if ring == 0:
            self.uc.reg_write(R.UC_X86_REG_ESP, esp)
            return eip
        cs, ss = RING_SELECTORS[ring]
        frame = IRET_FRAME.pack(eip, cs, EFLAGS_IF, esp, ss)
        self.ram[STACK0_TOP - len(frame):STACK0_TOP] = frame
        self.uc.reg_write(R.UC_X86_REG_ESP, STACK0_TOP - len(frame))
        return TRAMPOLINE

    def run(self, start: int, until: int = EXIT, **kw) -> list:
        """emu_start; returns the interrupts seen during this run."""
        first = len(self.seen)
        self.uc.emu_start(start, until, **kw)
        return self.seen[first:]

    def resume(self, until: int = EXIT) -> list:
        return self.run(self.reg(R.UC_X86_REG_EIP), until)

    # ---- QEMU's "exception in progress" field --------------------------------------
    def find_exception_state(self) -> int:
        """Offset in a saved context of the field QEMU sets when an exception is raised
        and clears only when it delivers one through the IDT (which Unicorn never
        does): -1 before a fault, the vector after. Found with one page fault, on a
        scratch copy of the state."""
        saved = self.uc.context_save()
        self.uc.context_restore(self.ring0)
        before = bytes(self.uc.context_save())
        probe = self.load(CODE + 0xF000, "mov eax, dword ptr [0x400000]")   # PD[1] is empty
        self.run(probe - 5)
        after = bytes(self.uc.context_save())
        self.uc.context_restore(saved)
        found = [off for off in range(0, len(before) - 3, 4)
                 if before[off:off + 4] == b"\xff" * 4 and after[off:off + 4] == b"\x0e\x00\x00\x00"]
        if len(found) != 1:
            raise SystemExit(f"cannot find QEMU's exception state in a context (candidates {found})")
        self.exc_offset = found[0]
        return found[0]

    def exception_state(self) -> int:
        raw = bytes(self.uc.context_save())
        return struct.unpack_from("<i", raw, self.exc_offset)[0]

    def clear_exception_state(self) -> None:
        """What smpxen's CpuCore.reset_fault_state does: -1 into the field."""
        ctx = self.uc.context_save()
        addr = ctypes.cast(ctx.context, ctypes.c_void_p).value
        ctypes.c_int32.from_address(addr + self.exc_offset).value = -1
        self.uc.context_restore(ctx)
