"""Probe: how a Unicorn x86-32 core enters ring 1 and ring 3.

1. uc.reg_write(SS, ...) with a selector whose DPL is not the current CPL is refused
   (UC_ERR_EXCEPTION), so SS cannot be written into another ring.
2. CPL follows SS, not CS: writing a ring-1 code selector into CS from ring 0 leaves
   the core in ring 0 (a `mov eax, cr0` still runs, no #GP).
3. An `iretd` from ring 0 with a frame on the ring-0 stack does enter ring 1 and
   ring 3: there CS and SS read back with RPL 1 / 3 and `mov eax, cr0` raises #GP.
4. The way back to ring 0 without restoring a saved context (smpxen/pcpu/bounce.py
   enter_via_trampoline, which keeps the guest's FPU state): writing the ring-0 SS
   from ring 3 is refused, but with CR0.PE and PG cleared for a moment SS can be
   set to 0, and after CR0 is restored the ring-0 CS and SS can be written.

    python scripts/probes/ring_entry.py

Exits 1 naming the point that no longer holds."""
import sys

from unicorn import UcError
from unicorn import x86_const as R

from _bare32 import CODE, RING0_CS, RING0_DS, RING_SELECTORS, Bare32

GP, TRAP = 13, 0x80
CR0_PE, CR0_PG = 1, 1 << 31
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

    # Back to ring 0 from the ring-3 stop above, keeping the rest of the context.
    try:
        cpu.uc.reg_write(R.UC_X86_REG_SS, RING0_DS)
        direct = "accepted"
    except UcError:
        direct = "refused"
    cr0 = cpu.reg(R.UC_X86_REG_CR0)
    cpu.uc.reg_write(R.UC_X86_REG_CR0, cr0 & ~(CR0_PE | CR0_PG))
    cpu.uc.reg_write(R.UC_X86_REG_SS, 0)
    cpu.uc.reg_write(R.UC_X86_REG_CR0, cr0)
    cpu.uc.reg_write(R.UC_X86_REG_CS, RING0_CS)
    cpu.uc.reg_write(R.UC_X86_REG_SS, RING0_DS)
    back = [v for v, _e, _c in cpu.run(CODE + 6)]    # mov eax, cr0; int 0x80
    in_ring0 = back == [TRAP]
    print(f"from ring 3: reg_write(SS) with the ring-0 selector {direct}; clearing CR0.PE|PG, "
          f"SS := 0, restoring CR0, then ring-0 CS and SS: `mov eax, cr0` "
          f"{'runs (ring 0)' if in_ring0 else 'faults'}")
    if direct != "refused" or not in_ring0:
        failures.append(f"the way back to ring 0 changed: direct SS write {direct}, "
                        f"after the CR0 detour interrupts {back}")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
