"""Probe: what Unicorn 2.1.4 offers to make hypervisor pages unreadable from ring 1
while the CPU itself still reads the GDT through them (smpxen.pcpu.seal relies on
facts 2-6; exit_address.py shows why HV_EXIT_VA, once a user alias of the
trampoline page, is now in the M2P table).

x86 paging cannot separate ring 1 from ring 0: QEMU gives CPL 0, 1 and 2 the same
MMU index, so a supervisor page the hypervisor's trampoline or a segment load can
read is readable by ring-1 code too. Unicorn's memory permissions plus
UC_HOOK_MEM_*_PROT callbacks are the only per-access check, and they only work
for MMIO-backed ranges:

1. RAM-backed range, no permissions: the CPU's own descriptor reads (helpers,
   always through the slow path) reach the READ_PROT hook every time, but the TLB
   entry they fill then serves a guest's explicit load directly (translated code
   tests the soft TLB inline): ring 1 reads the GDT without the hook being asked.
2. MMIO-backed range, no permissions: every access reaches the hook (MMIO TLB
   entries always take the slow path); returning True lets it proceed and the
   MMIO read callback supplies the bytes; returning False ends emu_start with
   UC_ERR_READ_PROT, EIP at the faulting instruction, and nothing stays cached.
3. The hook also sees the CPU's implicit descriptor reads (a ring-1 `mov ds, ax`
   reads the GDT entry as two 4-byte reads), with the PHYSICAL address, EIP
   synced to the loading instruction and CPL readable, so it can tell them from
   the instruction's explicit accesses.
4. Code in an MMIO range still runs (as uncached translation blocks, so slowly):
   the ring-0 entry trampoline can live in a sealed page.
5. After a refusal the core runs on from the faulting instruction, and an allowed
   read returns the page's bytes.
6. Mapping RAM in pieces (RAM around the MMIO holes): until a region has been
   unmapped, Unicorn gives a new pointer-backed block the RAM offset after the
   smallest block so far, so a piece mapped after a smaller one can overlap another
   piece's offsets, and code translated for one physical page then runs for another
   (two domains' kernels at the same virtual address). Mapping the biggest piece
   first keeps the offsets apart.

    python scripts/probes/sealed_pages.py

Prints one line per fact and exits 1 if any did not hold."""
import struct
import sys

from keystone import KS_ARCH_X86, KS_MODE_32, Ks
from unicorn import (UC_ARCH_X86, UC_ERR_READ_PROT, UC_HOOK_INTR, UC_HOOK_MEM_FETCH_PROT,
                     UC_HOOK_MEM_READ_PROT, UC_MODE_32, UC_PROT_ALL, UC_PROT_NONE, Uc, UcError)
from unicorn import x86_const as R

from smpxen.arch.x86 import make_segment
from smpxen.pcpu.ucpatch import forbid_mid_instruction_exits

PD, PT_LOW, PT_HV = 0x1000, 0x2000, 0x3000         # page directory and two L1s
CODE1_VA, STACK1_VA, STACK0_VA = 0x4000, 0x5000, 0x6000
SEALED_PA = 0x10000                                 # GDT page, then trampoline page
HV_VA = 0xFC400000                                  # where both are mapped (supervisor, RO)
TRAMP_VA = HV_VA + 0x1000
RING0_CS, RING0_DS, RING1_CS, RING1_DS = 0x08, 0x10, 0x19, 0x21
EXIT_VA = 0x7FF0
P, RW, US, A = 1, 2, 4, 0x20

RING1 = """
    mov ax, 0x21
    mov ds, ax
    mov eax, dword ptr [0xFC400020]
    int3
"""


def gdt_page() -> bytes:
    gdt = bytearray(0x1000)
    for sel, access in ((RING0_CS, 0x9A), (RING0_DS, 0x92), (RING1_CS, 0xBA), (RING1_DS, 0xB2)):
        gdt[sel & ~7:(sel & ~7) + 8] = make_segment(0, 0xFFFFF, access)
    return bytes(gdt)


class Machine:
    def __init__(self, mmio: bool):
        ks = Ks(KS_ARCH_X86, KS_MODE_32)
        self.ring1 = bytes(ks.asm(RING1, CODE1_VA)[0])
        self.explicit_eip = CODE1_VA + len(ks.asm("mov ax, 0x21\nmov ds, ax", CODE1_VA)[0])
        self.sealed = bytearray(gdt_page() + bytes(ks.asm("iretd", TRAMP_VA)[0]).ljust(0x1000, b"\0"))
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, SEALED_PA, UC_PROT_ALL)
        if mmio:
            uc.mmio_map(SEALED_PA, 0x2000, self._mmio_read, None, None, None)
        else:
            uc.mem_map(SEALED_PA, 0x2000, UC_PROT_ALL)
            uc.mem_write(SEALED_PA, bytes(self.sealed))
        uc.mem_protect(SEALED_PA, 0x2000, UC_PROT_NONE)
        forbid_mid_instruction_exits(uc._uch)
        pd = [0] * 1024
        pd[0] = PT_LOW | P | RW | US | A
        pd[HV_VA >> 22] = PT_HV | P | RW | A                    # supervisor only
        uc.mem_write(PD, struct.pack("<1024I", *pd))
        low = [0] * 1024
        for va in (CODE1_VA, STACK1_VA, STACK0_VA, EXIT_VA & ~0xFFF):
            low[va >> 12] = va | P | RW | US | A
        uc.mem_write(PT_LOW, struct.pack("<1024I", *low))
        hv = [0] * 1024
        hv[0] = SEALED_PA | P | A                               # GDT, read-only
        hv[1] = (SEALED_PA + 0x1000) | P | A                    # trampoline, read-only
        uc.mem_write(PT_HV, struct.pack("<1024I", *hv))
        uc.mem_write(CODE1_VA, self.ring1)
        self.events = []          # (kind, physical address, size, eip, cpl)
        self.policy = lambda kind, pa, size, eip, cpl: True
        self.running = False
        uc.hook_add(UC_HOOK_MEM_READ_PROT, self._prot)
        uc.hook_add(UC_HOOK_MEM_FETCH_PROT, self._prot)
        uc.hook_add(UC_HOOK_INTR, lambda u, n, d: u.emu_stop())
        uc.reg_write(R.UC_X86_REG_GDTR, (0, HV_VA, 0xFFF, 0))
        uc.reg_write(R.UC_X86_REG_CR3, PD)
        uc.reg_write(R.UC_X86_REG_CR0, 0x80010031)              # PG WP ET PE
        for reg, sel in ((R.UC_X86_REG_CS, RING0_CS), (R.UC_X86_REG_SS, RING0_DS),
                         (R.UC_X86_REG_DS, RING0_DS), (R.UC_X86_REG_ES, RING0_DS)):
            uc.reg_write(reg, sel)
        self.events.clear()

    def _mmio_read(self, _uc, offset, size, _data):
        return int.from_bytes(self.sealed[offset:offset + size], "little")

    def _prot(self, uc, access, address, size, _value, _data):
        kind = "fetch" if access == 24 else "read"       # UC_MEM_FETCH_PROT / UC_MEM_READ_PROT
        if not self.running:
            return True                                  # our own reg_write of a selector
        eip, cpl = uc.reg_read(R.UC_X86_REG_EIP), uc.reg_read(R.UC_X86_REG_CS) & 3
        self.events.append((kind, address, size, eip, cpl))
        return self.policy(kind, address, size, eip, cpl)

    def enter_ring1(self):
        """Run the ring-0 trampoline (iretd) into the ring-1 code."""
        frame = struct.pack("<5I", CODE1_VA, RING1_CS, 0x202, STACK1_VA + 0xF00, RING1_DS)
        self.uc.mem_write(STACK0_VA + 0x1000 - 20, frame)
        self.uc.reg_write(R.UC_X86_REG_ESP, STACK0_VA + 0x1000 - 20)
        return self.run(TRAMP_VA)

    def run(self, start):
        self.running = True
        try:
            self.uc.emu_start(start, EXIT_VA)
            return None
        except UcError as e:
            return e.errno
        finally:
            self.running = False

    def eip(self):
        return self.uc.reg_read(R.UC_X86_REG_EIP)


def main() -> int:
    ok = True

    def fact(n, holds, text):
        nonlocal ok
        ok &= holds
        print(f"{n}. {'yes' if holds else 'NO '}  {text}")

    # 1. RAM-backed: allow the CPU's reads, refuse the explicit one -- it is never asked.
    m = Machine(mmio=False)
    m.policy = lambda kind, pa, size, eip, cpl: eip != m.explicit_eip
    err = m.enter_ring1()
    hooked = [e for e in m.events if e[4] == 1]
    value = m.uc.reg_read(R.UC_X86_REG_EAX)
    fact(1, err is None and hooked and all(e[3] != m.explicit_eip for e in hooked)
         and value == struct.unpack("<I", gdt_page()[0x20:0x24])[0],
         f"RAM range: {len(hooked)} implicit ring-1 reads hooked, the explicit read was not "
         f"and returned the descriptor word {value:#x}")

    # 2-5. MMIO-backed: every access is seen; implicit GDT reads allowed, explicit refused.
    m = Machine(mmio=True)
    m.policy = lambda kind, pa, size, eip, cpl: cpl == 0 or eip != m.explicit_eip
    err = m.enter_ring1()
    implicit = [e for e in m.events if e[4] == 1 and e[3] != m.explicit_eip]
    explicit = [e for e in m.events if e[3] == m.explicit_eip]
    fact(2, err == UC_ERR_READ_PROT and m.eip() == m.explicit_eip and len(explicit) == 1,
         f"MMIO range: explicit ring-1 read refused, emu_start -> READ_PROT, EIP {m.eip():#x} "
         f"at the load")
    m.events.clear()
    again = m.run(m.explicit_eip)
    fact(2, again == UC_ERR_READ_PROT and len(m.events) == 1,
         "MMIO range: the retried read is hooked and refused again (nothing cached)")
    want = [("read", SEALED_PA + 0x20, 4), ("read", SEALED_PA + 0x24, 4)]
    fact(3, [e[:3] for e in implicit] == want and all(e[3] == CODE1_VA + 4 for e in implicit),
         f"implicit descriptor reads of `mov ds, ax` seen: {[(k, hex(a), s) for k, a, s in want]}, "
         f"physical addresses, EIP at the mov, CPL 1")
    fetches = [e for e in m.events if e[0] == "fetch"]
    ring0 = Machine(mmio=True)
    ring0.enter_ring1()
    tramp_fetch = [e for e in ring0.events if e[0] == "fetch" and e[4] == 0]
    fact(4, bool(tramp_fetch) and not fetches,
         f"the ring-0 trampoline ran from the MMIO page ({len(tramp_fetch)} fetch checks)")
    m.events.clear()
    m.policy = lambda *a: True
    m.uc.reg_write(R.UC_X86_REG_EIP, m.explicit_eip)
    rest = m.run(m.explicit_eip)
    fact(5, rest is None and m.uc.reg_read(R.UC_X86_REG_EAX) == struct.unpack(
        "<I", gdt_page()[0x20:0x24])[0],
        "after a refusal the same core runs on; an allowed read returns the page's bytes")
    fact(6, ram_pieces(biggest_first=False) == (1, 1) and ram_pieces(biggest_first=True) == (1, 2),
         "RAM mapped small piece first: the second page ran the first page's translated "
         "code; biggest piece first: each page ran its own")
    return 0 if ok else 1


def ram_pieces(biggest_first: bool) -> tuple:
    """Map RAM as [0, 64K), [64K, 72K), [72K, 136K), the small piece first or the big
    ones first, and run `mov eax, N; int3` through one virtual page mapped first to
    physical 0x3000 (N=1), then to 0x15000 (N=2): small piece first, both pages get
    the same RAM offsets (the second 64K piece's offsets are the first one's)."""
    pieces = [(0, 0x10000), (0x10000, 0x12000), (0x12000, 0x22000)]
    order = sorted(pieces, key=lambda p: p[0] - p[1]) if biggest_first else [pieces[1], pieces[0], pieces[2]]
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    for start, end in order:
        uc.mem_map(start, end - start, UC_PROT_ALL)
    forbid_mid_instruction_exits(uc._uch)
    ks = Ks(KS_ARCH_X86, KS_MODE_32)
    uc.mem_write(0x3000, bytes(ks.asm("mov eax, 1\nint3", 0x400000)[0]))
    uc.mem_write(0x15000, bytes(ks.asm("mov eax, 2\nint3", 0x400000)[0]))
    uc.hook_add(UC_HOOK_INTR, lambda u, n, d: u.emu_stop())
    pd = [0] * 1024
    pd[1] = 0x2000 | P | RW | A                          # 4 MiB .. 8 MiB through the L1 at 0x2000
    uc.mem_write(0x1000, struct.pack("<1024I", *pd))
    uc.reg_write(R.UC_X86_REG_CR3, 0x1000)
    uc.reg_write(R.UC_X86_REG_CR0, 0x80010031)
    seen = []
    for frame in (0x3000, 0x15000):
        uc.mem_write(0x2000, struct.pack("<I", frame | P | RW | A))
        uc.reg_write(R.UC_X86_REG_CR3, 0x1000)           # flushes the soft TLB
        uc.emu_start(0x400000, 0x400FF0)
        seen.append(uc.reg_read(R.UC_X86_REG_EAX))
    return tuple(seen)


if __name__ == "__main__":
    sys.exit(main())
