"""Domain-0's user space in the machine process: how the tools (smpxen/control/xc.py)
make hypercalls as Domain-0, as Xen's tools do through XenLinux's privcmd device.

Design. Hypercall arguments are guest pointers into Domain-0's memory, and only the
PCPU hosting Domain-0 may write Domain-0's memory (docs/design.md, invariant 1). So
user space has a region of Domain-0's address space of its own, the privcmd window
at PRIVCMD_VA, which the boot-time builder sets up from the last pages of Domain-0's
memory and leaves out of start_info.nr_pages, so Domain-0's kernel never uses them
(smpxen/domain/builder.py). A request is a list of steps - stores into the
window, hypercalls with pointers into it, loads from it - sent to the PCPU hosting
Domain-0, which runs them on Domain-0's VCPU between slices as Domain-0 would
(smpxen/pcpu/privcmd.py) and answers with their results. Nothing else of the
machine process reaches the hypervisor: every privilege check applies (a domU making
the same hypercalls gets -EPERM), and a wild pointer is -EFAULT.

The window's first ARG_PAGES pages, Domain-0's own, hold arguments (bump-allocated
per request); the other MAP_PAGES pages of it are unmapped, and are where foreign
frames get mapped (mmu_update with MMUEXT_SET_FOREIGNDOM into the window's own L1,
whose machine address Domain-0's kernel knows: the machine built it), so user space
can fill another domain's frames as xc_map_foreign_range lets Xen's tools."""
from __future__ import annotations

from smpxen.control.endpoint import STOP, XmError
from smpxen.domain.builder import PRIVCMD_ARG_PAGES, PRIVCMD_PAGES, PRIVCMD_VA
from smpxen.ipc import messages as M
from smpxen.xen import errno

PAGE = 4096
ARG_PAGES = PRIVCMD_ARG_PAGES
MAP_PAGES = PRIVCMD_PAGES - ARG_PAGES
ARG_BASE = PRIVCMD_VA
MAP_BASE = PRIVCMD_VA + ARG_PAGES * PAGE
ARG_BYTES = ARG_PAGES * PAGE


class PrivcmdFailed(XmError):
    """The request could not run (Domain-0 gone, a fault in the window)."""


class Request:
    """One privcmd request being put together: argument buffers in the window and
    the steps; `run` sends it and returns the steps' results."""

    def __init__(self):
        self.steps: list = []
        self.cursor = ARG_BASE

    def alloc(self, nbytes: int) -> int:
        """nbytes of the argument area (8-aligned); XmError if it is full."""
        va = self.cursor
        end = va + ((nbytes + 7) & ~7)
        if end > ARG_BASE + ARG_BYTES:
            raise XmError(f"a privcmd request needs more than the {ARG_BYTES >> 10} KiB of "
                          "argument space in Domain-0's privcmd window")
        self.cursor = end
        return va

    def put(self, data: bytes) -> int:
        """A buffer holding `data`; returns its Domain-0 address."""
        va = self.alloc(len(data))
        self.steps.append(["w", va, bytes(data)])
        return va

    def store(self, va: int, data: bytes) -> None:
        """A store of user space at `va` (a foreign frame mapped in the window)."""
        self.steps.append(["w", va, bytes(data)])

    def call(self, nr: int, *args: int) -> int:
        """Hypercall nr; returns the index of its result. The request stops at the
        first negative result."""
        args = [a & 0xFFFFFFFF for a in args] + [0] * (5 - len(args))
        self.steps.append(["h", int(nr), *args])
        return len(self.steps) - 1

    def read(self, va: int, nbytes: int) -> int:
        self.steps.append(["r", va, nbytes])
        return len(self.steps) - 1


class Privcmd:
    """The privcmd device of one control session."""

    def __init__(self, session):
        self.session = session

    def run(self, req: Request) -> list:
        """Run the request on Domain-0's VCPU; the results of the steps that ran (the
        ones after a failed hypercall did not)."""
        s = self.session
        cpu = s.machine.dom0_pcpu()
        if cpu is None:
            raise PrivcmdFailed("this machine has no Domain-0")
        steps = req.steps
        reply = s.endpoint.submit(s, cpu, lambda seq: M.encode(M.PRIVCMD, M.MACHINE, seq, steps))
        if reply is STOP:
            raise XmError("the machine is stopping")
        _kind, _pcpu, _seq, results, error = reply
        if error:
            raise PrivcmdFailed(error)
        return results


def result_of(results: list, index: int) -> int | None:
    """A step's result, or None if the request stopped before it."""
    return results[index] if index < len(results) else None


def errname(rc: int) -> str:
    return errno.errname(rc)
