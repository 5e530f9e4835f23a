"""Probe: how a Unicorn x86-32 core enters ring 1 and ring 3.

1. uc.reg_write(SS, ...) with a selector whose DPL is not the current CPL is refused
   (UC_ERR_EXCEPTION), so SS cannot be written into another ring.
2. CPL follows SS, not CS: writing a ring-1 code selector into CS from ring 0 leaves
   the core in ring 0 (a `mov eax, cr0` still runs, no #GP).
3. An `iretd` from ring 0 with a frame on the ring-0 stack does enter ring 1 and
   ring 3: there CS and SS read back with RPL 1 / 3 and `mov eax, cr0` raises #GP.

    python scripts/probes/ring_entry.py

Exits 1 naming the point that no longer holds."""
import sys

from unicorn import UcError
from unicorn import x86_const as R

from _bare32 import CODE, RING_SELECTORS, Bare32

GP, TRAP = 13, 0x80
GUEST = "mov ebx, cs\n mov ecx, ss\n int 0x80\n mov eax, cr0\n int 0x80"


def main() -> int:
    cpu = Bare32()
    cpu.load(CODE, GUEST)
    failures = []

    refused = []
    for ring in (1, 3):
        try:
            cpu.uc.reg_write(R.UC_X86_REG_SS, RING_SELECTORS[ring][1])
        except UcError:
            refused.append(ring)
    if refused != [1, 3]:
        failures.append(f"reg_write of SS into ring(s) {sorted({1, 3} - set(refused))} is no longer refused")

    start = cpu.enter(0, CODE)
    cpu.uc.reg_write(R.UC_X86_REG_CS, RING_SELECTORS[1][0])
    vectors = [v for v, _eip, _cpl in cpu.run(start) + cpu.resume()]
    stayed = vectors == [TRAP, TRAP]          # the privileged mov between them did not fault
    if not stayed:
        failures.append(f"writing CS changed the privilege level (interrupts {vectors})")
    print(f"from ring 0: reg_write(SS) with a ring-1/ring-3 selector "
          f"{'refused' if refused == [1, 3] else 'accepted'}; after CS := ring-1 code selector "
          f"`mov eax, cr0` {'still runs (ring 0)' if stayed else 'faults'}")

    entered = []
    for ring in (1, 3):
        seen = cpu.run(cpu.enter(ring, CODE))
        cs, ss = cpu.reg(R.UC_X86_REG_EBX), cpu.reg(R.UC_X86_REG_ECX)
        seen += cpu.resume()
        ok = (cs & 3, ss & 3) == (ring, ring) and [v for v, _e, _c in seen] == [TRAP, GP]
        entered.append(f"ring {ring}: cs={cs:#x} ss={ss:#x}, mov eax, cr0 -> "
                       f"{'#GP' if ok else [v for v, _e, _c in seen]}")
        if not ok:
            failures.append(f"iret into ring {ring} did not give CPL {ring}: cs={cs:#x} ss={ss:#x} {seen}")
    print("iretd from a ring-0 trampoline: " + "; ".join(entered))
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
