"""Probe: two things about memory and paging that the hypervisor side must know.

1. uc.mem_read / uc.mem_write take PHYSICAL addresses even with paging on: with
   virtual 0x200000 mapped to physical 0x5000, mem_read(0x200000) reads physical
   0x200000. The hypervisor walks a guest's page tables itself
   (smpxen/hv/guestmem.py).
2. QEMU's page walk sets the accessed bit (and the dirty bit on a write) in the
   guest's PTEs, in RAM, like a real CPU, even though the page table is mapped
   read-only to the guest; code comparing page-table entries must mask them.

    python scripts/probes/paging_access.py

Exits 1 naming the point that no longer holds."""
import sys

from unicorn import x86_const as R

from _bare32 import CODE, PT, PTE_A, PTE_D, PTE_P, PTE_RW, PTE_US, Bare32

VA_READ, VA_WRITE, PA_READ, PA_WRITE = 0x200000, 0x201000, 0x5000, 0x6000
GUEST = f"mov eax, dword ptr [{VA_READ:#x}]\n mov dword ptr [{VA_WRITE:#x}], 1\n int 0x80"


def main() -> int:
    cpu = Bare32()
    flags = PTE_P | PTE_RW | PTE_US
    cpu.set_pte(VA_READ, PA_READ, flags)
    cpu.set_pte(VA_WRITE, PA_WRITE, flags)
    cpu.ram[PA_READ:PA_READ + 4] = b"phys"
    cpu.ram[VA_READ:VA_READ + 4] = b"same"
    failures = []

    got = bytes(cpu.uc.mem_read(VA_READ, 4))
    print(f"mem_read({VA_READ:#x}) with {VA_READ:#x} -> {PA_READ:#x} mapped: {got!r} "
          f"({'physical' if got == b'same' else 'virtual'} address)")
    if got != b"same":
        failures.append("mem_read now translates virtual addresses")

    cpu.load(CODE, GUEST)
    cpu.run(cpu.enter(1, CODE))
    loaded = cpu.reg(R.UC_X86_REG_EAX).to_bytes(4, "little")
    pte_r, pte_w = cpu.u32(PT + (VA_READ >> 12) * 4), cpu.u32(PT + (VA_WRITE >> 12) * 4)
    print(f"guest load/store (load gave {loaded!r}): PTEs before {flags:#x}, after "
          f"read {pte_r & 0xFFF:#x}, after write {pte_w & 0xFFF:#x} (A={PTE_A:#x}, D={PTE_D:#x})")
    if loaded != b"phys":
        failures.append("the guest load did not go through the page table")
    if pte_r & 0xFFF != flags | PTE_A or pte_w & 0xFFF != flags | PTE_A | PTE_D:
        failures.append("the page walk no longer sets the accessed/dirty bits")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
