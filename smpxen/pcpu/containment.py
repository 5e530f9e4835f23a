"""How a PCPU keeps a failure where it belongs: an error in hypervisor code run for
one domain crashes that domain (Xen's domain_crash), a remote call that raised
fails the caller's hypercall, and a halt of the machine unwinds any wait."""
from __future__ import annotations

import traceback

TRACEBACK_FRAMES = 4


class MachineHalting(BaseException):
    """The machine told this PCPU to halt while it waited for a peer. A BaseException
    so it unwinds a hypercall past the containment that catches Exception."""


class RemoteCallFailed(Exception):
    """The function another PCPU ran for us raised (its message is the reason)."""


def error_detail(what: str, exc: BaseException) -> str:
    """One line saying what failed, then the innermost frames of the traceback."""
    frames = traceback.format_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    return f"hypervisor error in {what}: {type(exc).__name__}: {exc}\n" + "".join(frames).rstrip()
