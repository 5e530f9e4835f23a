"""Cross-process locks for the hypervisor's shared bookkeeping.

Lock-prefixed instructions are not atomic across Unicorn instances (docs/design.md,
invariant 1), and Python has no atomics on shared memory either, so the PCPU processes
serialise updates of shared hypervisor state with POSIX record locks (fcntl) on
bytes of the RAM segment's descriptor. The kernel drops a process's record locks
when it dies, so a PCPU killed while holding one cannot wedge the others.
Record locks belong to a process, not a thread: only one thread per process
(the PCPU's main thread, or the machine's) may use them."""
from __future__ import annotations

import fcntl
import os

# Lock slots: byte offsets used only as lock names. Record locks are advisory, so
# they do not affect the memory at those offsets.
LOCK_MM = 0          # frame table, free pool, page types and counts
LOCK_DOMAINS = 1     # domain table allocation, domain ids
LOCK_EVTCHN = 2      # event-channel tables
LOCK_TIME = 3        # global timebase stamp (xen2 model)
LOCK_TRACE_READER = 4  # held by the one process reading the trace buffers (smpxen/trace/area.py)


class SharedLock:
    def __init__(self, fd: int, slot: int):
        self.fd = fd
        self.slot = slot
        self.depth = 0     # re-entrant within the owning thread

    def acquire(self) -> None:
        if self.depth == 0:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, self.slot, os.SEEK_SET)
        self.depth += 1

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self.slot, os.SEEK_SET)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Locks:
    """The named locks of one machine, for one process."""

    def __init__(self, fd: int):
        self.mm = SharedLock(fd, LOCK_MM)
        self.domains = SharedLock(fd, LOCK_DOMAINS)
        self.evtchn = SharedLock(fd, LOCK_EVTCHN)
        self.time = SharedLock(fd, LOCK_TIME)
