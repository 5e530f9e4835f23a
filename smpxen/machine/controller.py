"""The domain controller: what xend does for the control interfaces in Xen 2.0,
run by the machine process (which plays Domain-0's user space).

Its end of each domain's rings is worked by the PCPU hosting the domain
(smpxen/pcpu/ctrl_if.py); this side decides what to send and matches the answers:

* requests to a guest (console input, shutdown, memory target) each get an id
  (0..254; 0xFF means "no answer wanted" in XenLinux) and go out as CTRL_REQUEST
  to the PCPU the domain table names; at most CONTROL_RING_SIZE are unanswered per
  domain, the rest wait here in order (bounded: MAX_QUEUED requests, of which
  console input holds at most CONSOLE_QUEUE_BYTES; more is refused). Answers
  (CTRL_RESPONSE) are matched by id and finish the request: a callback gets a
  result dict ({"ok": True, ...} or {"ok": False, "error": ...}).
* a domain that ends fails what it had not answered.
* every message to a domain (CTRL_REQUEST, CONSOLE_INPUT) carries the next number
  of that domain's sequence: the PCPUs hand them over in that order however they
  travel (smpxen/pcpu/ctrl_if.py). The numbers go on across reuses of a domain id,
  so a message to a domain that is gone never passes for one to its successor.
* console input for Domain-0 is not a ring message: it goes to Domain-0's PCPU,
  which queues it for CONSOLEIO_read and raises VIRQ_CONSOLE (Xen's serial input).

Domain-0 is the controller's own domain and has no control interface; neither has
any domain when the machine has no Domain-0 (smpxen/domain/ctrl_channel.py)."""
from __future__ import annotations

import collections
import itertools
import os
import queue
import select
import struct
import threading
import time
import traceback
from dataclasses import dataclass, field

from smpxen.domain import ctrl_channel
from smpxen.domain.ctrl_ring import make_msg, parse_msg
from smpxen.ipc import messages as M
from smpxen.shm.domains import DS_RUNNING
from smpxen.xen.domain_controller import (CMSG_CONSOLE, CMSG_CONSOLE_DATA, CMSG_MEM_REQUEST,
                                          CMSG_MEM_REQUEST_SET, CMSG_SHUTDOWN, CMSG_SHUTDOWN_NAMES,
                                          CONTROL_MSG_DATA, CONTROL_MSG_NO_ID, CONTROL_RING_SIZE,
                                          MemRequest)

MAX_QUEUED = 64                   # requests waiting for room in one domain's ring
CONSOLE_QUEUE_BYTES = 2048        # console input waiting, in bytes (what is typed beyond is dropped)
PAGES_PER_MIB = 256


class ControlError(Exception):
    """A request the controller refuses at once (one line for the user)."""


@dataclass
class Request:
    domid: int
    what: str                      # "console", "shutdown", "mem"
    type_: int
    subtype: int
    data: bytearray
    on_done: object = None         # callable(result dict) or None
    id_: int = -1
    extra: dict = field(default_factory=dict)

    def message(self) -> bytes:
        return make_msg(self.type_, self.subtype, self.id_, bytes(self.data))


@dataclass
class DomainRings:
    outstanding: dict = field(default_factory=dict)        # id -> Request in the ring
    queue: collections.deque = field(default_factory=collections.deque)
    next_id: int = 0
    sent: int = 0
    answered: int = 0


class Replies:
    """Answers for the control endpoint's worker threads (smpxen/control/
    ctrl_verbs.py): a worker opens a token, sends its request to the machine's main
    thread (Session.tell_machine("ctrl", ...)), and waits on the token's queue; the
    main thread puts the answer there, now or when the guest answers."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queues: dict[int, queue.Queue] = {}
        self._tokens = itertools.count(1)

    def open(self) -> tuple[int, queue.Queue]:
        q: queue.Queue = queue.Queue()
        with self._lock:
            token = next(self._tokens)
            self._queues[token] = q
        return token, q

    def close(self, token: int) -> None:
        with self._lock:
            self._queues.pop(token, None)

    def put(self, token: int, answer: dict) -> None:
        with self._lock:
            q = self._queues.get(token)
        if q is not None:                  # a worker that gave up is not waiting
            q.put(answer)


REPLIES = Replies()


class DomainController:
    def __init__(self, domtable, send, ram=None):
        """send(pcpu, *message parts): a message to a PCPU's inbox; ram: machine RAM
        (to attach to domains built at run time)."""
        self.domtable = domtable
        self.ram = ram
        self.send = send
        self.rings: dict[int, DomainRings] = {}
        self.next_seq: dict[int, int] = {}  # domid -> number of its next message
        self.counts = collections.Counter()
        self.console = None                # the machine's ConsoleMux and domain records,
        self.records: dict = {}            # for the verbs' requests (attach)

    def attach(self, console, records: dict) -> None:
        self.console, self.records = console, records

    # ---- requests of `smpxen xm` verbs, on the machine's main thread -------------------
    def serve(self, data: dict) -> None:
        """{"token", "op", "args"} from a verb's worker; the answer, a dict with "ok",
        goes to REPLIES[token]."""
        token, op, args = data["token"], data["op"], data["args"]

        def answer(result: dict) -> None:
            REPLIES.put(token, result)
        try:
            if op == "console_read":
                answer(self._console_read(*args))
            elif op == "console_input":
                answer({"ok": True, "accepted": self.console_input(args[0], bytes(args[1]))})
            elif op == "shutdown":
                self.shutdown(args[0], args[1], answer)
            elif op == "mem_set":
                self.mem_set(args[0], args[1], answer)
            elif op == "attach":            # a domain built at run time (ctrl_verbs.controller_of)
                info = self.domtable.find(args[0])
                if info is not None and self.ram is not None:
                    ctrl_channel.attach(self.ram, info, args[1], args[2], self.next_seq.get(args[0], 0))
            elif op == "state":                # (the verb found the domain: no record, destroyed since)
                rec = self.records.get(args[0])
                answer({"ok": True, "ended": rec.ended if rec else {"how": "destroyed", "detail": ""}})
            else:
                answer({"ok": False, "error": f"unknown controller request {op!r}"})
        except ControlError as e:
            answer({"ok": False, "error": str(e)})
        except Exception as e:             # a bug here: one line to the verb, details to stderr,
            traceback.print_exc()          # and the machine goes on
            answer({"ok": False, "error": f"internal error in the domain controller ({op}): "
                                          f"{type(e).__name__}: {e}"})

    def _console_read(self, domid: int, offset: int) -> dict:
        rec = self.records.get(domid)
        if rec is None:                     # the verb found it: destroyed since
            return {"ok": True, "offset": offset, "data": b"", "lost": 0,
                    "ended": {"how": "destroyed", "detail": ""}}
        end, data, lost = self.console.output_since(domid, offset)
        return {"ok": True, "offset": end, "data": data, "lost": lost, "ended": rec.ended}

    # ---- what users ask for --------------------------------------------------------
    def _domain(self, domid: int, needs_ring: bool = True):
        info = self.domtable.find(domid)
        if info is None:
            raise ControlError(f"no domain {domid}")
        if info.state != DS_RUNNING:
            raise ControlError(f"domain {domid} has ended")
        if needs_ring:
            if domid == 0:
                raise ControlError("domain 0 is the controller's own domain: it has no control interface")
            if not info.ctrl.port:
                raise ControlError(f"domain {domid} has no control interface (the machine has no Domain-0)")
        return info

    def console_input(self, domid: int, data: bytes) -> int:
        """Send typed input to a domain's console; returns the bytes accepted."""
        info = self._domain(domid, needs_ring=domid != 0)
        if domid == 0:
            self._send(info, 0, M.CONSOLE_INPUT, bytes(data))
            return len(data)
        rings = self.rings.setdefault(domid, DomainRings())
        queued = sum(len(r.data) for r in rings.queue if r.what == "console")
        data = bytes(data[:max(0, CONSOLE_QUEUE_BYTES - queued)])
        taken = 0
        while taken < len(data):
            last = rings.queue[-1] if rings.queue else None
            if last is not None and last.what == "console" and len(last.data) < CONTROL_MSG_DATA:
                chunk = data[taken:taken + CONTROL_MSG_DATA - len(last.data)]
                last.data += chunk
            elif len(rings.queue) < MAX_QUEUED:
                chunk = data[taken:taken + CONTROL_MSG_DATA]
                rings.queue.append(Request(domid, "console", CMSG_CONSOLE, CMSG_CONSOLE_DATA, bytearray(chunk)))
            else:
                break
            taken += len(chunk)
            self._pump(domid)
        return taken

    def shutdown(self, domid: int, subtype: int, on_done=None) -> None:
        """CMSG_SHUTDOWN: the guest answers, then shuts down with that reason."""
        if subtype not in CMSG_SHUTDOWN_NAMES:
            raise ControlError(f"unknown shutdown kind {subtype}")
        self._domain(domid)
        self._queue(Request(domid, "shutdown", CMSG_SHUTDOWN, subtype, bytearray(), on_done))
        self._pump(domid)

    def mem_set(self, domid: int, target_pages: int, on_done=None) -> None:
        """CMSG_MEM_REQUEST_SET: the guest gives frames back or takes more (up to its
        maximum) and answers with its status."""
        info = self._domain(domid)
        if target_pages < 1:
            raise ControlError(f"memory target must be at least 1 page, got {target_pages}")
        if target_pages > info.max_pages:
            raise ControlError(f"domain {domid}'s maximum is {info.max_pages // PAGES_PER_MIB} MiB "
                               f"({info.max_pages} pages); asked for {target_pages} pages")
        req = MemRequest(target_pages, 0)
        self._queue(Request(domid, "mem", CMSG_MEM_REQUEST, CMSG_MEM_REQUEST_SET, bytearray(bytes(req)),
                            on_done, extra={"target_pages": target_pages}))
        self._pump(domid)

    # ---- the rings' flow ---------------------------------------------------------
    def _queue(self, req: Request) -> None:
        rings = self.rings.setdefault(req.domid, DomainRings())
        if len(rings.queue) >= MAX_QUEUED:
            raise ControlError(f"domain {req.domid} is not answering its control ring "
                               f"({len(rings.outstanding)} requests unanswered, {len(rings.queue)} waiting)")
        rings.queue.append(req)

    def _free_id(self, rings: DomainRings) -> int:
        for _ in range(CONTROL_MSG_NO_ID):
            i = rings.next_id
            rings.next_id = (i + 1) % CONTROL_MSG_NO_ID
            if i not in rings.outstanding:
                return i
        raise AssertionError("no free control message id")    # outstanding <= CONTROL_RING_SIZE

    def _pump(self, domid: int) -> None:
        rings = self.rings.get(domid)
        info = self.domtable.find(domid)
        if rings is None or info is None:
            return
        while rings.queue and len(rings.outstanding) < CONTROL_RING_SIZE:
            req = rings.queue.popleft()
            req.id_ = self._free_id(rings)
            rings.outstanding[req.id_] = req
            rings.sent += 1
            self.counts[f"{req.what}_requests"] += 1
            self._send(info, domid, M.CTRL_REQUEST, req.message())

    def _send(self, info, domid: int, kind: str, data: bytes) -> None:
        seq = self.next_seq.get(domid, 0)
        self.next_seq[domid] = (seq + 1) & 0xFFFFFFFF
        self.send(info.processor, kind, M.MACHINE, domid, seq, data)

    def on_response(self, domid: int, id_: int, raw: bytes | None, why: str,
                    tot_pages: int | None = None) -> None:
        """CTRL_RESPONSE from a PCPU (tot_pages: the domain's size as it answered)."""
        rings = self.rings.get(domid)
        req = rings.outstanding.pop(id_, None) if rings else None
        if req is None:
            self.counts["unexpected_responses"] += 1
            return
        rings.answered += 1
        if raw is None:
            self._finish(req, {"ok": False, "error": f"domain {domid}: not delivered: {why}"})
        else:
            self._finish(req, self._result(req, raw, tot_pages))
        self._pump(domid)

    def _result(self, req: Request, raw: bytes, tot_pages: int | None) -> dict:
        type_, subtype, _id, data = parse_msg(raw)
        out = {"ok": True, "domid": req.domid}
        if req.what == "mem":
            out["target_pages"] = req.extra["target_pages"]
            out["tot_pages"] = tot_pages     # read now, it may already serve the next request
            if len(data) == struct.calcsize("<II"):
                out["status"] = MemRequest.from_buffer_copy(data).status
            else:
                out.update(ok=False, error=f"domain {req.domid} did not understand the memory request")
        elif req.what == "shutdown":
            out["reason"] = CMSG_SHUTDOWN_NAMES[req.subtype]
        return out

    def domain_ended(self, domid: int, how: str) -> None:
        """What the domain had not answered will not be."""
        rings = self.rings.pop(domid, None)
        if rings is None:
            return
        said = {"shutdown": "shut down"}.get(how, how)
        for req in list(rings.outstanding.values()) + list(rings.queue):
            self._finish(req, {"ok": False, "error": f"domain {domid} {said} before it answered",
                               "ended": how})

    def _finish(self, req: Request, result: dict) -> None:
        if req.on_done is not None:
            req.on_done(result)

    def pending(self, domid: int) -> tuple[int, int]:
        """(requests in the ring unanswered, requests waiting for room)."""
        rings = self.rings.get(domid)
        return (len(rings.outstanding), len(rings.queue)) if rings else (0, 0)


class TerminalInput:
    """`smpxen up --input`: what arrives on standard input goes to Domain-0's console,
    as Xen 2.0 passes the serial line's characters to Domain-0 (a terminal in its
    usual line mode hands over a line at a time; Ctrl-D ends the input). A machine
    driver (smpxen/machine/experiments.py): looked at every POLL_S."""
    POLL_S = 0.02

    def __init__(self, fd: int, controller: DomainController, stream):
        self.fd = fd
        self.controller = controller
        self.stream = stream
        self.next_at = time.monotonic()

    def due(self) -> float:
        return self.next_at if self.fd is not None else time.monotonic() + 3600

    def fire(self, _outboxes) -> None:
        self.next_at = time.monotonic() + self.POLL_S
        while self.fd is not None and select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 4096)
            if not data:
                self.fd = None                  # end of input
                return
            try:
                self.controller.console_input(0, data)
            except ControlError as e:
                self.stream.write(f"smpxen: --input: {e}; no more input is read\n")
                self.fd = None
