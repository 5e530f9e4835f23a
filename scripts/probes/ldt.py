"""Probe: the LDT under Unicorn.

1. A segment load through an LDT page that is not mapped raises #PF with CR2 at the
   descriptor's address in the LDT, also in ring 0 from a `pop ds` (smpxen's entry
   trampoline reloads the guest's selectors there, and maps the LDT shadow page
   lazily when that fault comes: smpxen/pcpu/paging.py).
2. LDTR, written with uc.reg_write(UC_X86_REG_LDTR, (selector, base, limit, flags)),
   is part of a saved context, and that context restores in another process (a
   fresh interpreter with its own Unicorn core over the same shared RAM): a
   segment load through the LDT works there (smpxen migrates contexts this way).

    python scripts/probes/ldt.py

Exits 1 naming the point that no longer holds."""
import ast
import mmap
import pickle
import subprocess
import sys

from unicorn import x86_const as R

from _bare32 import CODE, DATA, PTE_P, PTE_RW, PTE_US, RAM_BYTES, Bare32, descriptor

PF = 14
LDT_VA = LDT_PA = 0x300000
LDT_FLAGS = 0x8200 | ((LDT_VA >> 16) & 0xFF) | (LDT_VA & 0xFF000000)   # present, type LDT
LDT_SEL_0, LDT_SEL_1 = 0x07, 0x0F           # entries 0 and 1, TI=1, RPL 3
LDTR_VALUE = (0x48, LDT_VA, 2 * 8 - 1, LDT_FLAGS)
MARK0, MARK1 = 0x1111AAAA, 0x2222BBBB
RING0 = f"push {LDT_SEL_0:#x}\n pop ds\n mov eax, dword ptr [0]\n int 0x80"
OTHER = f"mov ax, {LDT_SEL_1:#x}\n mov ds, ax\n mov eax, dword ptr [0]\n int 0x80"


def child(fd: int) -> None:
    """Restore the context read from stdin; load DS from LDT entry 1 and read."""
    ram = mmap.mmap(fd, RAM_BYTES)
    cpu = Bare32(ram, fd, format_ram=False)
    cpu.uc.context_restore(pickle.loads(sys.stdin.buffer.read()))
    ldtr = cpu.uc.reg_read(R.UC_X86_REG_LDTR)
    cpu.load(CODE + 0x100, OTHER)
    seen = cpu.run(CODE + 0x100)
    print(repr((tuple(ldtr), [v for v, _e, _c in seen], cpu.reg(R.UC_X86_REG_EAX))))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        child(int(sys.argv[2]))
        return 0
    cpu = Bare32()
    failures = []
    cpu.set_pte(LDT_VA, LDT_PA, 0)                                # LDT page not mapped yet
    cpu.ram[LDT_PA:LDT_PA + 16] = (descriptor(DATA, 0xF, 0xF3) + descriptor(DATA + 0x100, 0xF, 0xF3))
    cpu.set_u32(DATA, MARK0)
    cpu.set_u32(DATA + 0x100, MARK1)
    cpu.uc.reg_write(R.UC_X86_REG_LDTR, LDTR_VALUE)
    cpu.ring0 = cpu.uc.context_save()
    cpu.load(CODE, RING0)

    seen = cpu.run(cpu.enter(0, CODE))
    cr2 = cpu.reg(R.UC_X86_REG_CR2)
    cpu.set_pte(LDT_VA, LDT_PA, PTE_P | PTE_RW | PTE_US)         # "map the shadow page"
    cpu.find_exception_state()
    cpu.clear_exception_state()
    seen += cpu.resume()
    read = cpu.reg(R.UC_X86_REG_EAX)
    print(f"ring-0 pop ds through an unmapped LDT page: vector {seen[0][0]} at eip {seen[0][1]:#x} "
          f"(pop ds at {CODE + 2:#x}), cr2 {cr2:#x}; after mapping it the load reads {read:#x}")
    if seen[0][:2] != (PF, CODE + 2) or cr2 != LDT_VA or read != MARK0:
        failures.append(f"LDT fault from ring 0 changed: {seen}, cr2 {cr2:#x}, read {read:#x}")

    ctx = pickle.dumps(cpu.uc.context_save())
    out = subprocess.run([sys.executable, __file__, "child", str(cpu.fd)], input=ctx,
                         capture_output=True, pass_fds=[cpu.fd], timeout=30)
    if out.returncode != 0:
        print(out.stderr.decode()[-2000:])
        failures.append("the other process could not restore the context")
    else:
        ldtr, vectors, value = ast.literal_eval(out.stdout.decode())
        print(f"context restored in another process: LDTR {tuple(hex(x) for x in ldtr)}, "
              f"load through LDT entry 1 reads {value:#x}")
        if tuple(ldtr) != LDTR_VALUE or vectors != [0x80] or value != MARK1:
            failures.append(f"LDTR did not travel with the context: {ldtr}, {vectors}, {value:#x}")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
