"""Probe: QEMU (as built in Unicorn) applies a data segment's base but not its limit.

A ring-1 guest loads DS with a descriptor of base 0x20000 and a byte-granular limit
of 0xFFF, then reads and writes at offset 0x3000, three pages past the limit. A real
CPU raises #GP; here both accesses go through to base + offset. So the limit of
Xen 2.0's guest segments (they end at 0xFC3FFFFF, below the hypervisor) does not
keep a guest out of the hypervisor area under Unicorn.

    python scripts/probes/segment_limits.py

Exits 1 if the limit is enforced (or the base ignored)."""
import struct
import sys

from unicorn import x86_const as R

from _bare32 import CODE, DATA, Bare32, descriptor

SMALL_DS = (7 << 3) | 1              # GDT entry 7, RPL 1
BASE, LIMIT, OFFSET = DATA, 0xFFF, 0x3000
GUEST = f"""
    mov ax, {SMALL_DS:#x}
    mov ds, ax
    mov eax, dword ptr [{OFFSET:#x}]
    mov dword ptr [{OFFSET + 4:#x}], 0x5A5A5A5A
    int 0x80
"""


def main() -> int:
    cpu = Bare32()
    cpu.set_gdt_entry(7, descriptor(BASE, LIMIT, 0xB3, pages=False))   # ring-1 data, accessed
    cpu.set_u32(BASE + OFFSET, 0xC0FFEE)
    cpu.load(CODE, GUEST)
    seen = cpu.run(cpu.enter(1, CODE))
    read = cpu.reg(R.UC_X86_REG_EAX)
    written = struct.unpack_from("<I", cpu.ram, BASE + OFFSET + 4)[0]
    vectors = [v for v, _e, _c in seen]
    print(f"DS base {BASE:#x} limit {LIMIT:#x}: read at offset {OFFSET:#x} gave {read:#x}, "
          f"write landed at {BASE + OFFSET + 4:#x} ({written:#x}); interrupts {vectors} (no #GP)")
    if vectors != [0x80] or read != 0xC0FFEE or written != 0x5A5A5A5A:
        print("FACT NO LONGER HOLDS: the access past the limit faulted or missed the base "
              f"(interrupts {vectors}, read {read:#x})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
