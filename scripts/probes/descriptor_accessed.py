"""Probe: a descriptor without its accessed bit, in a GDT mapped read-only, kills the
process when a segment register is loaded through uc.reg_write.

Loading a segment sets the descriptor's accessed bit in memory. From guest code a
failing write is a fault like any other; from uc.reg_write (outside emu_start) QEMU
has nowhere to deliver it and the process dies with SIGSEGV. Descriptor tables are
read-only to the CPU in smpxen (as in Xen), so every descriptor is written with the
accessed bit already set (smpxen/arch/x86.py make_segment).

Each case runs in a child process, since one of them crashes:

    python scripts/probes/descriptor_accessed.py

Exits 1 if the read-only case no longer crashes or a control case does."""
import signal
import subprocess
import sys

from unicorn import x86_const as R

from _bare32 import GDT, PTE_P, PTE_RW, PTE_US, Bare32, descriptor

FRESH_DS = 7 << 3


def child(accessed: bool, writable: bool) -> None:
    cpu = Bare32()
    cpu.set_gdt_entry(7, descriptor(0, 0xFFFFF, 0x92 | int(accessed)))
    cpu.set_pte(GDT, GDT, PTE_P | PTE_US | (PTE_RW if writable else 0))
    cpu.uc.reg_write(R.UC_X86_REG_CR3, cpu.reg(R.UC_X86_REG_CR3))     # flush the TLB
    cpu.uc.reg_write(R.UC_X86_REG_DS, FRESH_DS)
    sys.exit(0)


def outcome(accessed: bool, writable: bool) -> int:
    return subprocess.run([sys.executable, __file__, "child", str(int(accessed)), str(int(writable))],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30).returncode


def describe(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        child(sys.argv[2] == "1", sys.argv[3] == "1")
    ro_clear, rw_clear, ro_set = outcome(False, False), outcome(False, True), outcome(True, False)
    print(f"reg_write(DS) through a descriptor without the accessed bit: GDT read-only -> "
          f"{describe(ro_clear)}, GDT writable -> {describe(rw_clear)}; "
          f"bit preset, GDT read-only -> {describe(ro_set)}")
    if ro_clear != -signal.SIGSEGV:
        print("FACT NO LONGER HOLDS: a clear accessed bit in a read-only GDT no longer crashes reg_write")
        return 1
    if rw_clear != 0 or ro_set != 0:
        print("FACT NO LONGER HOLDS: a control case failed too; the crash is not about the accessed bit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
