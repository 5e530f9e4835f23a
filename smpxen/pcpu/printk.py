"""The hypervisor's console ring (Xen 2.0 drivers/char/console.c): what the
hypervisor itself prints, "(XEN) ..." lines, kept for DOM0_READCONSOLE (`smpxen xm
dmesg`). Xen has one ring of CONSOLE_RING_SIZE bytes that fills and then drops
what no longer fits, until Domain-0 reads it with CONSOLE_RING_CLEAR. smpxen's
hypervisor runs on every PCPU, so each PCPU keeps its part of the ring with the
system time of every line; READCONSOLE merges the parts in time order (a remote
call to every PCPU) and the bytes beyond the ring's size are dropped, as Xen's.
Guests' own console_io output is not in the ring, in Xen 2.0 either (it goes to
the serial line: here, the machine's console)."""
from __future__ import annotations

from smpxen.xen.dom0_ops import CONSOLE_RING_SIZE


class PrintkRing:
    def __init__(self, clock):
        self.clock = clock
        self.lines: list[tuple[int, bytes]] = []     # (system time ns, line)
        self.size = 0

    def printk(self, text: str) -> None:
        line = f"(XEN) {text}\n".encode(errors="replace")
        if self.size + len(line) > CONSOLE_RING_SIZE:
            return                                   # full: dropped, as Xen's ring
        self.lines.append((self.clock.now(), line))
        self.size += len(line)

    def read(self, clear: bool) -> list:
        """[[time, line], ...] of this PCPU (msgpack-able); emptied if `clear`."""
        out = [list(item) for item in self.lines]
        if clear:
            self.lines, self.size = [], 0
        return out


def merge(parts: list[list], count: int) -> bytes:
    """The ring's first `count` bytes from every PCPU's part, in time order."""
    lines = sorted((t, line) for part in parts for t, line in part)
    ring = b"".join(line for _t, line in lines)[:CONSOLE_RING_SIZE]
    return ring[:count]


def remote_read(pcpu, clear: bool) -> list:
    """REMOTE_FUNCTIONS["printk_read"]: this PCPU's part of the ring."""
    return pcpu.printk.read(bool(clear))
