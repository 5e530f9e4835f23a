"""Probe: emu_start's "until" address must be fetchable in the ring the guest stops in.

When emu_start returns, Unicorn looks up the block at the until address in the
current mode. If that page faults for the current ring (a supervisor-only page
and a stop in ring 3), QEMU's exception state is left at #PF although no guest
instruction faulted: a phantom fault, and the next real page fault then arrives
as a double fault (see fault_state.py). With the until address in a
user-readable page the state stays clear. smpxen's HV_EXIT_VA
(smpxen/shm/layout.py) is therefore in a page every ring can read.

    python scripts/probes/exit_address.py

Exits 1 if the supervisor-only exit page no longer leaves a phantom fault, or the
user-readable one does."""
import sys

from _bare32 import CODE, PTE_P, PTE_RW, PTE_US, Bare32

PF, DF = 14, 8
EXIT_PAGE = 0x50000
GUEST = "int 0x80\n mov eax, dword ptr [0x400000]\n hlt"


def stop_in_ring3(user_exit_page: bool) -> tuple[int, int]:
    """(exception state after a ring-3 stop, vector the next real #PF arrives as)."""
    cpu = Bare32()
    cpu.find_exception_state()
    cpu.set_pte(EXIT_PAGE, EXIT_PAGE, PTE_P | PTE_RW | (PTE_US if user_exit_page else 0))
    cpu.load(CODE, GUEST)
    until = EXIT_PAGE + 0xFF0
    cpu.run(cpu.enter(3, CODE), until)          # stops in the hook at `int 0x80`
    state = cpu.exception_state()
    nxt = cpu.resume(until)
    return state, nxt[0][0] if nxt else -1


def main() -> int:
    sup_state, sup_next = stop_in_ring3(False)
    user_state, user_next = stop_in_ring3(True)
    print(f"stop in ring 3, until in a supervisor-only page: exception state {sup_state}, "
          f"next #PF arrives as vector {sup_next}; until in a user page: state {user_state}, "
          f"next #PF as vector {user_next}")
    failures = []
    if (sup_state, sup_next) != (PF, DF):
        failures.append("a supervisor-only until page no longer leaves a phantom #PF")
    if (user_state, user_next) != (-1, PF):
        failures.append("a user-readable until page leaves fault state behind")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
