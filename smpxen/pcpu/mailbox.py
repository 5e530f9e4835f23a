"""A PCPU's messages: its ZeroMQ sockets (the inbox its watcher thread drains, the
machine's inbox, the other PCPUs' inboxes), IPIs, remote calls with their replies,
and the one table of what each kind of message does here. Flow control and the
bound of every message source: smpxen/ipc/messages.py.

Remote calls run one of REMOTE_FUNCTIONS on another PCPU (`call`, `call_many`,
`post`); the caller serves its own inbox while it waits, because the callee may be
calling it at the same time. An error while acting on a message is contained: a
remote call answers IPI_FAILED (the caller's hypercall then fails), a message about
one of our domains crashes that domain; anything else is this PCPU's own bug."""
from __future__ import annotations

import collections
import sys
import time

import zmq

from smpxen.ipc import endpoints, messages as M
from smpxen.pcpu import domain, domctl, lifecycle, migration, msr, printk
from smpxen.pcpu.containment import MachineHalting, RemoteCallFailed, error_detail
from smpxen.pcpu.paging import remote_mm_flush, remote_mm_revoke
from smpxen.pcpu.watcher import Watcher

# A wait on another process has no deadline: with many PCPU processes on few host
# cores a peer can be off the CPU for seconds, and a PCPU that really died is the
# machine's to notice (it then halts everyone, which ends the wait). A long wait is
# only reported, every WAIT_NOTE_S seconds.
WAIT_NOTE_S = 10.0


def _ping(pcpu, arrived_ns: int) -> list:
    """When the call reached this PCPU (its watcher thread) and when it was handled
    (the main thread), host monotonic ns: one clock for every process."""
    return [arrived_ns, time.monotonic_ns()]


# What another PCPU may ask this one to run: name -> function(pcpu, *args).
REMOTE_FUNCTIONS = {
    "ping": _ping,
    "mm_flush": remote_mm_flush,
    "mm_revoke": remote_mm_revoke,
    "dom_pause": domctl.dom_pause,
    "dom_adjust": domctl.dom_adjust,
    "sched_ctl": domctl.sched_ctl_local,
    "migrate_request": domctl.migrate_request,
    # Domain-0 control: domains made and unmade (pcpu/domain.py), their state, the MSRs,
    # the hypervisor's console ring.
    "dom_adopt": domain.dom_adopt,
    "dom_build": domain.dom_build,
    "dom_kill": domain.dom_kill,
    "dom_getctxt": domain.dom_getctxt,
    "dom_iopl": domctl.dom_iopl,
    "dom_vm_assist": domctl.dom_vm_assist,
    "msr": msr.remote_access,
    "printk_read": printk.remote_read,
}
# A remote function that cannot answer yet returns DEFERRED, keeps Mailbox.caller()
# and answers later with Mailbox.reply (e.g. dom_kill of the domain on the CPU).
DEFERRED = object()


def _remote_call(pcpu, msg) -> None:
    seq, function, args = msg[2], msg[3], msg[4]
    if function == "ping":
        args = [pcpu.mailbox.watcher.arrivals.pop((M.IPI_CALL, msg[1], seq), 0)]
    pcpu.mailbox.calling = (msg[1], seq)
    result = REMOTE_FUNCTIONS[function](pcpu, *args)
    if result is not DEFERRED:
        pcpu.mailbox.reply((msg[1], seq), result)


def _time_probe(pcpu, msg) -> None:
    if pcpu.sched is not None:          # only once time is running
        pcpu.mailbox.send_machine(M.TIME_SAMPLE, pcpu.index, msg[2], pcpu.clock.timebase.raw_now(),
                                  time.monotonic_ns())


# What each kind of message does on this PCPU: kind -> function(pcpu, msg).
MESSAGE_HANDLERS = {
    M.IPI_CALL: _remote_call,
    M.IPI_REPLY: lambda pcpu, msg: pcpu.mailbox.replies.__setitem__(msg[2], msg[3]),
    M.PLATFORM_TIME: lambda pcpu, msg: pcpu.mailbox.replies.__setitem__(msg[2], msg[3]),
    M.IPI_FAILED: lambda pcpu, msg: pcpu.mailbox.failures.__setitem__(msg[2], msg[3]),
    # The counter was zeroed on arrival, in the watcher thread (Watcher.immediate).
    M.IPI_TSC_SYNC: lambda pcpu, msg: setattr(pcpu.clock, "tsc_synced", True),
    M.IPI_EVTCHN_SET: lambda pcpu, msg: pcpu.events.on_ipi(*msg[2:6]),   # + the watcher's arrival time
    M.IPI_EVENT_CHECK: lambda pcpu, msg: None,        # waking up was the point
    M.IPI_MIGRATE: lambda pcpu, msg: migration.migrate_in(pcpu, msg[2]),
    M.MIGRATE: lambda pcpu, msg: pcpu.pending_migrations.append((msg[2], msg[3])),
    M.TIME_PROBE: _time_probe,
    M.CTRL_REQUEST: lambda pcpu, msg: pcpu.ctrl_if.on_message(M.CTRL_REQUEST, msg[2], msg[3], msg[4]),
    M.CONSOLE_INPUT: lambda pcpu, msg: pcpu.ctrl_if.on_message(M.CONSOLE_INPUT, msg[2], msg[3], msg[4]),
    M.PRIVCMD: lambda pcpu, msg: pcpu.privcmd.on_message(msg),
    M.START: lambda pcpu, msg: lifecycle.start(pcpu, msg[2]),
    M.HALT: lambda pcpu, msg: setattr(pcpu, "halted", True),
}
# Messages that need this PCPU's scheduler wait until its time and scheduler run.
NEEDS_SCHEDULER = frozenset({M.IPI_EVTCHN_SET, M.IPI_MIGRATE, M.CTRL_REQUEST, M.CONSOLE_INPUT,
                             M.PRIVCMD})
# Messages about one domain: an error while acting on one crashes that domain.
DOMAIN_OF = {M.IPI_EVTCHN_SET: lambda msg: msg[2], M.IPI_MIGRATE: lambda msg: msg[2]["domid"],
             M.CTRL_REQUEST: lambda msg: msg[2], M.CONSOLE_INPUT: lambda msg: msg[2]}


class Mailbox:
    DEFERRED = DEFERRED

    def __init__(self, pcpu, tag: str, stop_core, immediate: dict):
        self.pcpu = pcpu
        self.index = pcpu.index
        self.tag = tag
        self.zctx = zmq.Context(io_threads=1)
        inbox = endpoints.bind_inbox(self.zctx, endpoints.pcpu_endpoint(tag, pcpu.index))
        self.to_machine = endpoints.connect_outbox(self.zctx, endpoints.machine_endpoint(tag))
        self.peers: dict[int, zmq.Socket] = {}
        self.watcher = Watcher(inbox, stop_core, immediate)
        self.counts = {"ipis_sent": collections.Counter(), "ipis_received": collections.Counter()}
        self.replies: dict[int, object] = {}
        self.failures: dict[int, str] = {}      # seq -> why the remote call raised
        self._seq = 0
        self.calling: tuple[int, int] = (self.index, 0)   # (src, seq) of the remote call being run
        self._early: list = []                  # messages that arrived before the scheduler

    # ---- sending ----------------------------------------------------------------------
    def send_machine(self, *parts) -> None:
        self.to_machine.send(M.encode(*parts))

    def send_ipi(self, target: int, kind: str, *payload) -> None:
        self.pcpu.trace.ipi_sent(target, kind, payload)     # before it leaves: causes precede effects
        self._peer(target).send(M.encode(kind, self.index, *payload))
        self.counts["ipis_sent"][kind] += 1

    def connect_peers(self, nr_pcpus: int) -> None:
        """Connect to every other PCPU now: a first send would pay the handshake."""
        for cpu in range(nr_pcpus):
            if cpu != self.index:
                self._peer(cpu)

    def _peer(self, target: int):
        sock = self.peers.get(target)
        if sock is None:
            sock = self.peers[target] = endpoints.connect_outbox(
                self.zctx, endpoints.pcpu_endpoint(self.tag, target))
        return sock

    # ---- remote calls -----------------------------------------------------------------
    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def call(self, target: int, function: str, args=()):
        """Run REMOTE_FUNCTIONS[function] on PCPU `target` (this one included) and
        return its result. Raises RemoteCallFailed if it raised there."""
        if target == self.index:
            self.calling = (self.index, 0)
            result = REMOTE_FUNCTIONS[function](self.pcpu, *args)
            if result is DEFERRED:
                raise RuntimeError(f"{function} on this PCPU cannot wait for this PCPU")
            return result
        seq = self.next_seq()
        self.send_ipi(target, M.IPI_CALL, seq, function, list(args))
        return self.wait_reply(seq, f"pcpu{target} ({function})")

    def caller(self) -> tuple[int, int]:
        """Who the remote function being run answers (for a DEFERRED answer)."""
        return self.calling

    def reply(self, caller: tuple[int, int], result) -> None:
        """Answer a remote call (now, or later for one that was DEFERRED)."""
        src, seq = caller
        if seq:                    # seq 0: the caller does not wait for a result
            self.send_ipi(src, M.IPI_REPLY, seq, result)

    def post(self, target: int, function: str, args=()) -> None:
        """Run it there without waiting for a result (seq 0)."""
        if target == self.index:
            REMOTE_FUNCTIONS[function](self.pcpu, *args)
        else:
            self.send_ipi(target, M.IPI_CALL, 0, function, list(args))

    def timed_ping(self, target: int) -> tuple:
        """An IPI round trip to `target` with the time of each step, in ns: the call
        on the wire (send to the callee's watcher thread), the callee's handoff (its
        watcher to its main thread), the reply on the wire, our own handoff, total."""
        seq = self.next_seq()
        key = (target, seq)
        self.watcher.timed.add(key)
        t0 = time.monotonic_ns()
        self.send_ipi(target, M.IPI_CALL, seq, "ping", [])
        arrived, handled = self.wait_reply(seq, f"pcpu{target} (ping)")
        t_done = time.monotonic_ns()
        self.watcher.timed.discard(key)
        t_back = self.watcher.arrivals.pop((M.IPI_REPLY, *key))
        return arrived - t0, handled - arrived, t_back - handled, t_done - t_back, t_done - t0

    def call_many(self, targets, function: str, args=()) -> list:
        """Run it on several PCPUs at once: send every request first, then wait for
        all the replies (a multicast IPI, e.g. a TLB shootdown)."""
        seqs = []
        for target in targets:
            seqs.append(self.next_seq())
            self.send_ipi(target, M.IPI_CALL, seqs[-1], function, list(args))
        return [self.wait_reply(seq, f"pcpu{t} ({function})") for seq, t in zip(seqs, targets)]

    def wait_reply(self, seq: int, what: str):
        self.serve_until(lambda: seq in self.replies or seq in self.failures, f"an answer from {what}")
        if seq in self.failures:
            raise RemoteCallFailed(f"{what}: {self.failures.pop(seq)}")
        return self.replies.pop(seq)

    def serve_until(self, condition, what: str) -> None:
        """Handle incoming messages until condition() holds (others may be waiting on
        us at the same time, so we keep serving them). No deadline (WAIT_NOTE_S);
        a HALT from the machine ends the wait with MachineHalting."""
        started = time.monotonic()
        note_at = started + WAIT_NOTE_S
        w = self.watcher
        while not condition():
            if self.pcpu.halted:
                raise MachineHalting(what)
            if not w.queue:
                w.wake.wait(0.05)
            w.wake.clear()
            self.handle_messages()
            now = time.monotonic()
            if now >= note_at:
                sys.stderr.write(f"smpxen pcpu{self.index}: still waiting for {what} "
                                 f"after {now - started:.0f} s\n")
                note_at = now + WAIT_NOTE_S

    # ---- receiving ----------------------------------------------------------------------
    def handle_messages(self) -> None:
        pcpu = self.pcpu
        queue = self.watcher.queue
        if pcpu.sched is not None and self._early:
            queue.extendleft(reversed(self._early))
            self._early = []
        while queue:
            msg = queue.popleft()
            kind = msg[0]
            if pcpu.sched is None and kind in NEEDS_SCHEDULER:
                self._early.append(msg)
                continue
            if kind in M.IPI_KINDS:
                self.counts["ipis_received"][kind] += 1
            if msg[1] != M.MACHINE:         # from another PCPU: traced as an IPI received
                pcpu.trace.ipi_received(msg)
            handler = MESSAGE_HANDLERS.get(kind)
            if handler is None:
                raise RuntimeError(f"unexpected message {kind!r} from {msg[1]}")
            try:
                handler(pcpu, msg)
            except Exception as e:       # MachineHalting is not caught: it ends the PCPU
                self._failed(msg, e)

    def _failed(self, msg, exc: Exception) -> None:
        kind = msg[0]
        if kind == M.IPI_CALL:
            if msg[2]:
                self.send_ipi(msg[1], M.IPI_FAILED, msg[2], f"{type(exc).__name__}: {exc}")
            return
        domain_of = DOMAIN_OF.get(kind)
        v = self.pcpu.vcpus.get(domain_of(msg)) if domain_of else None
        if v is None:
            raise exc
        lifecycle.end_domain(self.pcpu, v, "crashed", -1, error_detail(f"message {kind}", exc))

    def close(self) -> None:
        self.watcher.close()
        self.zctx.destroy(linger=1000)
