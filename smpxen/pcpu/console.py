"""The per-domain bound on console output (console_io writes), kept by the PCPU
that runs the domain: a token bucket of BURST_BYTES refilled at RATE_BYTES_PER_S.
A write that does not fit is dropped whole and counted; when output is admitted
again (or the domain ends) the machine is told how much was lost, and shows it in
place as a note. So a domain flooding its console costs the machine process (and
its report) a bounded rate, whatever it writes.

A domain that moves writes from another PCPU, whose messages the machine may read
before the ones still on their way from the last (its inbox takes turns between
senders): so each domain's console messages are numbered, from a counter in its
DomainInfo (it moves with the domain), and the machine shows them in that order
(smpxen/machine/console.py)."""
from __future__ import annotations

import time

from smpxen.ipc import messages as M

BURST_BYTES = 64 * 1024
RATE_BYTES_PER_S = 64 * 1024
# Every write costs at least this much of the budget: the machine's cost is per
# message as much as per byte, so one-byte writes are bounded too (1 000/s).
MIN_CHARGE = 64


class ConsoleBudget:
    __slots__ = ("tokens", "stamp", "dropped")

    def __init__(self):
        self.tokens = float(BURST_BYTES)
        self.stamp: float | None = None
        self.dropped = 0           # bytes dropped since the last admitted write

    def admit(self, nbytes: int, now: float) -> tuple[bool, int]:
        """(write it?, bytes dropped before it that the machine must be told of)."""
        if self.stamp is not None:
            self.tokens = min(float(BURST_BYTES), self.tokens + (now - self.stamp) * RATE_BYTES_PER_S)
        self.stamp = now
        cost = max(nbytes, MIN_CHARGE)
        if cost > self.tokens:
            self.dropped += nbytes
            return False, 0
        self.tokens -= cost
        dropped, self.dropped = self.dropped, 0
        return True, dropped

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped


class ConsoleOut:
    """A PCPU's console path to the machine: each domain's writes within its budget."""

    def __init__(self, mailbox, index: int):
        self.mailbox = mailbox
        self.index = index

    def write(self, vcpu, data: bytes) -> None:
        admit, dropped = vcpu.console.admit(len(data), time.monotonic())
        if dropped:
            self._send(vcpu, M.CONSOLE_DROPPED, dropped)
        if admit:
            self._send(vcpu, M.CONSOLE, data)

    def domain_ended(self, vcpu) -> None:
        """Tell the machine what the domain's last writes lost."""
        dropped = vcpu.console.take_dropped()
        if dropped:
            self._send(vcpu, M.CONSOLE_DROPPED, dropped)

    def _send(self, vcpu, kind: str, payload) -> None:
        info = vcpu.info
        seq = info.console_seq
        info.console_seq = (seq + 1) & 0xFFFFFFFF
        self.mailbox.send_machine(kind, self.index, vcpu.domid, seq, payload)
