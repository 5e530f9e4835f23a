"""Probe: how `int n` and faults reach the hypervisor in Unicorn, and the fault state
a consumed fault leaves behind.

1. Unicorn never delivers through the IDT: with a valid IDT whose gates point at a
   handler, `int 0x80` and a page fault both go to the UC_HOOK_INTR hook and the
   handler never runs.
2. In the hook EIP is past the instruction for `int n`, at the instruction for a fault.
3. A fault the hook consumed leaves QEMU's "exception in progress" field set (it is
   cleared only by a delivery through the IDT). The next page fault then arrives
   as a double fault (#DF, vector 8), and the one after that ends emu_start with no
   hook call at all (QEMU takes it as a triple fault): the fault is lost.
4. Writing -1 into that field in a saved context (smpxen/pcpu/core.py
   reset_fault_state; the probe finds the field as CpuCore._calibrate does) makes the
   next fault arrive as the page fault it is.

    python scripts/probes/fault_state.py

Exits 1 naming the point that no longer holds."""
import struct
import sys

from unicorn import x86_const as R

from _bare32 import CODE, DATA, RING0_CS, Bare32

PF, DF, TRAP = 14, 8, 0x80
IDT = DATA + 0x1000
HANDLER = CODE + 0x800
MARKER = DATA
# A load from 0x400000 faults: the page directory maps only the first 4 MiB.
GUEST = "int 0x80\n mov eax, dword ptr [0x400000]\n int 0x80"


def gate(offset: int) -> bytes:
    """A 32-bit ring-0 interrupt gate."""
    return struct.pack("<HHBBH", offset & 0xFFFF, RING0_CS, 0, 0x8E, offset >> 16)


def main() -> int:
    cpu = Bare32()
    failures = []
    cpu.load(HANDLER, f"mov dword ptr [{MARKER:#x}], 1\n iretd")
    idt = b"".join(gate(HANDLER) for _ in range(256))
    cpu.ram[IDT:IDT + len(idt)] = idt
    cpu.uc.reg_write(R.UC_X86_REG_IDTR, (0, IDT, len(idt) - 1, 0))
    cpu.ring0 = cpu.uc.context_save()
    cpu.find_exception_state()
    end = cpu.load(CODE, GUEST)
    fault_eip = CODE + 2

    seen = cpu.run(cpu.enter(0, CODE), end)
    seen += cpu.resume(end)
    handler_ran = cpu.u32(MARKER) != 0
    expect = [(TRAP, CODE + 2, 0), (PF, fault_eip, 0)]
    print(f"IDT gates set, handler {'ran' if handler_ran else 'never ran'}; hook saw "
          + ", ".join(f"vector {v:#x} eip {e:#x}" for v, e, _c in seen)
          + f" (int 0x80 at {CODE:#x}, faulting load at {fault_eip:#x})")
    if handler_ran or seen != expect:
        failures.append(f"delivery changed: handler ran={handler_ran}, hook saw {seen}, expected {expect}")

    after_first = cpu.uc.context_save()
    state = cpu.exception_state()
    second = cpu.run(fault_eip, end)
    third = cpu.run(fault_eip, end)
    lost_at = cpu.reg(R.UC_X86_REG_EIP)
    cpu.uc.context_restore(after_first)
    cpu.clear_exception_state()
    cleared = cpu.run(fault_eip, end)
    print(f"after a consumed #PF the state field is {state}; the next #PF arrives as vector "
          f"{second[0][0] if second else 'none'}, the one after that as "
          f"{third[0][0] if third else 'nothing (run ended at ' + hex(lost_at) + ')'}; "
          f"with the field cleared: vector {cleared[0][0] if cleared else 'none'}")
    if state != PF or [v for v, _e, _c in second] != [DF] or third or lost_at != fault_eip:
        failures.append(f"consumed fault no longer poisons the next ones: state {state}, "
                        f"then {second}, then {third}")
    if [v for v, _e, _c in cleared] != [PF]:
        failures.append(f"clearing the state field did not restore delivery: {cleared}")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
