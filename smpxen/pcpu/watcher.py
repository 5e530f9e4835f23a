"""The PCPU's watcher thread: it owns the PCPU's inbox socket, queues every
message for the main thread, and stops the running emulation slice when a message
arrives or the main thread's deadline passes (emu_stop from another thread works,
because emu_start releases the GIL: docs/design.md, invariant 4).

The race this handles: the main thread may call emu_start just after the watcher
called emu_stop (which Unicorn ignores when no emulation is running). So while a
message is unconsumed or the deadline has passed, the watcher repeats the stop
every millisecond until the main thread clears `running`.

An idle PCPU costs nothing: outside a slice there is no deadline to watch, so the
watcher blocks until a message arrives, and `begin_slice` wakes it (a byte on a
pipe) only if it was asleep. Without this, 1 000 polls a second cost an idle PCPU
about 2 % of a host core."""
from __future__ import annotations

import collections
import os
import threading
import time

import zmq

from smpxen.ipc import messages as M

POLL_MS = 1


class Watcher(threading.Thread):
    def __init__(self, inbox: zmq.Socket, stop_core, immediate=None, clock_ns=time.monotonic_ns):
        super().__init__(name="pcpu-watcher", daemon=True)
        self.inbox = inbox
        self.stop_core = stop_core
        self.clock_ns = clock_ns
        self.queue: collections.deque = collections.deque()
        self.wake = threading.Event()
        self.running = False         # main thread: inside emu_start
        self.deadline_ns = None      # host monotonic ns at which to stop the slice
        self.received = 0
        # Timed pings (Mailbox.timed_ping): when their calls and replies arrive here.
        self.timed: set = set()          # (src, seq) of replies the main thread times
        self.arrivals: dict = {}         # (kind, src, seq) -> arrival, host monotonic ns
        self._done = False
        self._asleep = False         # blocked in poll without a timeout
        self._kick_r, self._kick_w = os.pipe()
        os.set_blocking(self._kick_r, False)
        # kind -> callable(msg) run in this thread on arrival, before queueing: for the
        # boot barrier, where a CPU spinning on the barrier reacts at once.
        self.immediate: dict = dict(immediate or {})

    def begin_slice(self, deadline_ns: int | None) -> None:
        """The main thread is about to run a slice that must stop at deadline_ns."""
        self.deadline_ns = deadline_ns
        self.running = True
        # Read after `running` is set; the watcher sets _asleep before it reads
        # `running`: so either it sees the slice, or we see it asleep and wake it.
        if self._asleep:
            os.write(self._kick_w, b"k")

    def end_slice(self) -> None:
        self.running = False

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(self._kick_r, zmq.POLLIN)
        while not self._done:
            self._asleep = True
            if self.running or self.queue:
                self._asleep = False
            events = dict(poller.poll(None if self._asleep else POLL_MS))
            self._asleep = False
            if self._kick_r in events:
                try:
                    os.read(self._kick_r, 4096)
                except BlockingIOError:
                    pass
            if self.inbox in events:
                while True:
                    try:
                        data = self.inbox.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    msg = M.decode(data)
                    kind = msg[0]
                    if kind == M.IPI_EVTCHN_SET:      # its arrival, for the event's timing
                        msg.append(self.clock_ns())
                    if (kind == M.IPI_CALL and msg[3] == "ping") or \
                            (kind == M.IPI_REPLY and (msg[1], msg[2]) in self.timed):
                        self.arrivals[kind, msg[1], msg[2]] = self.clock_ns()
                    act = self.immediate.get(msg[0])
                    if act is not None:
                        act(msg)
                    self.queue.append(msg)
                    self.received += 1
                self.wake.set()
            if self.running:
                deadline = self.deadline_ns
                if deadline is not None and not self.queue:
                    # zmq polls in whole milliseconds: sleep out the last one so a
                    # timer fires within tens of microseconds, not up to 1 ms late.
                    left = deadline - self.clock_ns()
                    if 0 < left < POLL_MS * 1_000_000:
                        time.sleep(left / 1e9)
                if self.queue or (deadline is not None and self.clock_ns() >= deadline):
                    # Safe at any moment: the core takes a stop only at the start of
                    # a translation block (smpxen.pcpu.ucpatch).
                    self.stop_core()

    def close(self) -> None:
        self._done = True
        os.write(self._kick_w, b"q")
        self.join(timeout=1)
        os.close(self._kick_r)
        os.close(self._kick_w)
