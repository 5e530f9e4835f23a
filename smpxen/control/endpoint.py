"""The control endpoint of `smpxen up`: where `smpxen xm` (smpxen/control/xm.py)
reaches a running machine.

Where: a ZeroMQ ROUTER socket bound at ipc://@smpxen-<tag>-control, a Linux
abstract-namespace socket of the host (smpxen/ipc/endpoints.py). Guests cannot
reach it: they have no sockets, only hypercalls, and everything the endpoint does
to the hypervisor it does as Domain-0's user space through hypercalls
(smpxen/control/privcmd.py), where every privilege check applies.

Protocol (msgpack): a client sends one request [b"", {"v": VERSION, "verb": str,
"args": [str, ...], "cwd": str}] from a DEALER socket; the machine answers with one
or more replies [b"", {"ok": bool, "out": str, "error": str | None, "more": bool}]:
"out" is text for the client's stdout, a reply with "more": True is followed by
others (a verb streaming output), the last has "more": False and says whether the
verb succeeded ("error" is then one line for the user).

Threads: the machine's main thread owns the ROUTER socket, polls it with its own
inbox and hands each request to a worker thread that runs the verb; workers never
touch the main thread's sockets. A worker sends what it has for the client, for a
PCPU (privcmd requests) or for the machine (a domain's name) over its own inproc
PUSH socket to the main thread, and waits for privcmd replies on a queue the main
thread fills. So two clients at once are two workers, each with its own requests
in flight; the PCPU hosting Domain-0 runs privcmd requests one after the other.
Verbs that last as long as their client (console, shutdown --wait) have workers of
their own (MAX_STREAMS), so open consoles never keep other verbs waiting.

Adding a verb: in any module imported by smpxen/control/verbs.py,

    @verb("name", "name DOM ARG", "what it does, one line")
    def name(s: Session) -> str | None:
        ...            # s.args: the words after the verb; s.privcmd / xc.py helpers
        return text    # printed by the client; raise XmError("one line") to fail

s.out(text) sends output before the verb ends (for verbs that stream);
s.stopping is set when the machine is going down. A verb with needs_dom0=False
runs on a machine without Domain-0 too."""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import msgpack
import zmq

VERSION = 1
MAX_WORKERS = 16                 # requests served at once; more wait in the socket
MAX_STREAMS = 32                 # verbs that last as long as their client (console) at once;
                                 # they have their own workers, so open consoles never
                                 # keep other verbs waiting; more are refused
STOP = None                      # what a waiting worker's queue gets when the machine stops


def control_endpoint(tag: str) -> str:
    return f"ipc://@smpxen-{tag}-control"


class XmError(Exception):
    """A verb failed: str() is the one line the user sees."""


@dataclass
class Verb:
    name: str
    run: Callable
    usage: str
    summary: str
    needs_dom0: bool = True
    aliases: tuple = field(default_factory=tuple)


# name -> Verb; smpxen/control/verbs.py fills it, other modules add theirs with @verb.
VERBS: dict[str, Verb] = {}


def verb(name: str, usage: str, summary: str, needs_dom0: bool = True, aliases: tuple = ()):
    def register(fn):
        v = Verb(name, fn, usage, summary, needs_dom0, tuple(aliases))
        for n in (name, *aliases):
            VERBS[n] = v
        return fn
    return register


def encode(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode(data: bytes):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Session:
    """One request being served by a worker thread."""

    def __init__(self, endpoint: "ControlEndpoint", identity: bytes, verb_name: str, args: list,
                 cwd: str):
        self.endpoint = endpoint
        self.identity = identity
        self.verb = verb_name
        self.args = args
        self.cwd = cwd
        self._sock = None
        self._privcmd = None

    # ---- talking to the main thread ------------------------------------------------
    def _send(self, *parts) -> None:
        if self._sock is None:
            self._sock = self.endpoint.zctx.socket(zmq.PUSH)
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.connect(self.endpoint.inproc)
        self._sock.send(encode(list(parts)))

    def out(self, text: str) -> None:
        """Output for the client now, before the verb ends."""
        self._send("client", self.identity, encode({"ok": True, "out": text, "error": None, "more": True}))

    def finish(self, ok: bool, out: str, error: str | None) -> None:
        self._send("client_last", self.identity, encode({"ok": ok, "out": out, "error": error, "more": False}))

    def to_pcpu(self, cpu: int, payload: bytes) -> None:
        self._send("pcpu", cpu, payload)

    def tell_machine(self, event: str, data) -> None:
        """Something the machine's records need (e.g. a new domain's name)."""
        self._send("event", event, data)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()

    # ---- what verbs use -------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.endpoint.stopping.is_set()

    @property
    def client_gone(self) -> bool:
        """The client left (seen when output for it could not be delivered: a verb
        that streams says something now and then to find out)."""
        return self.identity in self.endpoint.gone

    @property
    def machine(self):
        """The machine's read-only facts for verbs (smpxen/machine/machine.py MachineFacts)."""
        return self.endpoint.facts

    @property
    def privcmd(self):
        if self._privcmd is None:
            from smpxen.control.privcmd import Privcmd
            self._privcmd = Privcmd(self)
        return self._privcmd

    def path(self, p: str) -> str:
        """A path the client gave, relative to its working directory."""
        return os.path.normpath(os.path.join(self.cwd, os.path.expanduser(p)))


def _streams(s: Session) -> bool:
    """A verb that lasts as long as its client wants: a console (or a shutdown
    waiting for a domain that may never go)."""
    return s.verb == "console" or (s.verb == "shutdown" and bool({"--wait", "-w"} & set(s.args)))


class ControlEndpoint:
    """The machine side. `facts` answers what verbs may ask of the machine
    (has_dom0, dom0_pcpu, cpus, names); `events(name, data)` takes what workers
    tell the machine; `outboxes` are the machine's sockets to its PCPUs."""

    def __init__(self, zctx: zmq.Context, tag: str, facts, events: Callable, outboxes: list):
        self.zctx = zctx
        self.tag = tag
        self.address = control_endpoint(tag)
        self.inproc = f"inproc://smpxen-{tag}-control-out"
        self.facts = facts
        self.events = events
        self.outboxes = outboxes
        self.stopping = threading.Event()
        self.router = zctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # A send to a client that left fails (EHOSTUNREACH) instead of vanishing, so the
        # verb serving it learns that it may stop (Session.client_gone). Written by
        # this (main) thread only; an identity leaves the set with its request's last
        # answer.
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.gone: set[bytes] = set()
        self.router.bind(self.address)
        self.pull = zctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.bind(self.inproc)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._waiting: dict[int, queue.Queue] = {}
        self._workers: set[threading.Thread] = set()
        self._streams: set[threading.Thread] = set()
        self._backlog: list = []

    # ---- main thread -------------------------------------------------------------------
    def sockets(self) -> tuple:
        return self.router, self.pull

    def serve(self, ready) -> None:
        """Handle whatever of our sockets is ready (`ready`: zmq.Poller.poll's dict)."""
        if self.pull in ready:
            while True:
                try:
                    msg = decode(self.pull.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                self._from_worker(msg)
        if self.router in ready:
            while True:
                try:
                    frames = self.router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._request(frames)
        self._start_backlog()

    def _from_worker(self, msg) -> None:
        kind = msg[0]
        if kind in ("client", "client_last"):
            try:
                self.router.send_multipart([msg[1], b"", msg[2]], zmq.NOBLOCK)
            except zmq.ZMQError as e:
                if e.errno == zmq.EHOSTUNREACH and kind == "client":
                    self.gone.add(msg[1])     # the client went away: nothing to tell it
            if kind == "client_last":
                self.gone.discard(msg[1])
        elif kind == "pcpu":
            self.outboxes[msg[1]].send(msg[2])
        elif kind == "event":
            self.events(msg[1], msg[2])

    def _request(self, frames) -> None:
        identity, payload = frames[0], frames[-1]
        try:
            req = decode(payload)
            verb_name, args, cwd = req["verb"], [str(a) for a in req.get("args", [])], str(req.get("cwd", "/"))
            if req.get("v") != VERSION or not isinstance(verb_name, str):
                raise ValueError("protocol version")
        except Exception:
            self._reply_now(identity, f"bad request (this machine speaks control protocol {VERSION}; "
                                      "is smpxen xm the same version as smpxen up?)")
            return
        if self.stopping.is_set():
            self._reply_now(identity, "the machine is stopping")
            return
        self._backlog.append(Session(self, identity, verb_name, args, cwd))

    def _start_backlog(self) -> None:
        self._workers = {t for t in self._workers if t.is_alive()}
        self._streams = {t for t in self._streams if t.is_alive()}
        waiting = []
        for s in self._backlog:
            pool, limit = (self._streams, MAX_STREAMS) if _streams(s) else (self._workers, MAX_WORKERS)
            if len(pool) >= limit:
                if pool is self._streams:
                    self._reply_now(s.identity, f"{s.verb}: {MAX_STREAMS} consoles or waiting shutdowns "
                                                "are open already; close one")
                else:
                    waiting.append(s)
                continue
            t = threading.Thread(target=self._run, args=(s,), name=f"smpxen-xm-{s.verb}", daemon=True)
            pool.add(t)
            t.start()
        self._backlog = waiting

    def _reply_now(self, identity: bytes, error: str) -> None:
        try:
            self.router.send_multipart(
                [identity, b"", encode({"ok": False, "out": "", "error": error, "more": False})], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def privcmd_reply(self, msg) -> None:
        """[PRIVCMD_REPLY, pcpu, seq, results, error] from the machine's inbox."""
        with self._lock:
            q = self._waiting.pop(msg[2], None)
        if q is not None:
            q.put(msg)

    def close(self, grace_s: float = 2.0) -> None:
        """The machine is stopping: waiting workers are told, given a moment to answer
        their clients, and the sockets close."""
        self.stopping.set()
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        for q in waiting:
            q.put(STOP)
        for s in self._backlog:
            self._reply_now(s.identity, "the machine is stopping")
        self._backlog = []
        # While the workers finish, what they ask of the machine is still served (a
        # console's last output, its domain's end).
        deadline = time.monotonic() + grace_s
        while any(t.is_alive() for t in self._workers | self._streams) and time.monotonic() < deadline:
            self.serve({self.pull: zmq.POLLIN})
            time.sleep(0.01)
        self.serve({self.pull: zmq.POLLIN})      # last answers to clients
        self.router.close()
        self.pull.close()

    # ---- worker threads ------------------------------------------------------------------
    def _run(self, s: Session) -> None:
        try:
            v = VERBS.get(s.verb)
            if v is None:
                raise XmError(f"unknown verb {s.verb!r} (verbs: {', '.join(sorted(set(x.name for x in VERBS.values())))})")
            if v.needs_dom0 and not self.facts.has_dom0():
                raise XmError("this machine has no Domain-0 (its config has no [dom0] table); "
                              "the control plane runs in Domain-0")
            out = v.run(s)
            s.finish(True, out or "", None)
        except XmError as e:
            s.finish(False, "", str(e))
        except Exception as e:            # a bug here: one line to the client, details to stderr
            traceback.print_exc()
            s.finish(False, "", f"internal error in {s.verb}: {type(e).__name__}: {e}")
        finally:
            s.close()

    def submit(self, s: Session, cpu: int, make_message: Callable[[int], bytes]):
        """Send a privcmd request built for its sequence number and wait for the reply
        (None if the machine stopped meanwhile)."""
        q: queue.Queue = queue.Queue()
        with self._lock:
            if self.stopping.is_set():
                return STOP
            seq = next(self._seq)
            self._waiting[seq] = q
        s.to_pcpu(cpu, make_message(seq))
        return q.get()
