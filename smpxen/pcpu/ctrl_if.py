"""The domain controller's hands on a PCPU: the controller's end of the control
interfaces of the domains this PCPU hosts, and Domain-0's console input.

In Xen 2.0 the domain controller (xend, in Domain-0's user space) maps each
domain's shared_info page and serves the control_if_t rings in it whenever the
guest notifies its domain_controller_evtchn. Here the controller is the machine
process (smpxen/machine/controller.py), which may not write a running domain's
shared_info: only the PCPU hosting the domain does (docs/design.md, "Who writes
what in machine RAM"). So that PCPU works the rings for it (smpxen/domain/
ctrl_ring.py, xend's discipline, with the controller's indices in the domain's
DomainInfo record, so they travel with the domain):

* The guest notifies (EVTCHNOP_send on its controller port; smpxen/hv/
  event_channel.py routes that here, inside the hypercall): up to
  CONTROL_RING_SIZE requests are read and answered at once. Console data goes to
  the machine under the domain's console bound (smpxen/pcpu/console.py), exactly as
  console_io output; every other request type gets the empty answer of a
  controller that does not serve it (counted). The guest's answers to the
  controller's requests go to the machine as CTRL_RESPONSE. Then the guest is
  notified from the controller's end (a send on Domain-0's port, as xend's
  xu_port_notify does).
* The machine sends a request (CTRL_REQUEST: console input, a shutdown or memory
  request): it is written into the rx ring and the guest notified. The machine
  never has more than CONTROL_RING_SIZE requests unanswered per domain (it counts
  the answers), so the ring has room; a request that cannot be delivered (domain
  gone or ended, no channel, ring full all the same) is answered at once with the
  reason, so the machine's count stays exact.

A message for a domain this PCPU does not host goes on to the PCPU that does, as
events do (smpxen/pcpu/events.py): a domain on its way here (the domain table
already names this PCPU) is not running anywhere, so its rings may be written.
Forwarding alone would reorder a domain's messages: the machine sends to the PCPU
the domain table names when it sends, so while a domain moves one message can go
the long way (old PCPU, then new) and the next the short way, and overtake it. So
the controller numbers each domain's messages (CTRL_REQUEST and CONSOLE_INPUT
alike), and they are handed to the domain strictly in that order: the number of the
next one is in the domain's DomainInfo (ctrl.in_seq, so it moves with the domain);
one that arrives early waits here, and what waits goes along when the domain moves.
A refusal (no such domain, no control interface) needs no order and is answered at
once; a number below the next one is a message to an earlier domain of that id.

Domain-0's console input: Xen 2.0 queues characters from the serial line in a
ring of SERIAL_RX_SIZE bytes (drivers/char/console.c), raises VIRQ_CONSOLE to
Domain-0 when the ring goes from empty to non-empty, and CONSOLEIO_read drains it;
characters that find the ring full are dropped. The machine sends input here
(CONSOLE_INPUT); the queue travels with Domain-0 when it moves."""
from __future__ import annotations

import collections

from smpxen.domain.ctrl_channel import CONTROLLER_DOMAIN
from smpxen.domain.ctrl_ring import ControllerPort, control_if_of, make_msg, parse_msg
from smpxen.ipc import messages as M
from smpxen.xen.domain_controller import CMSG_CONSOLE, CMSG_CONSOLE_DATA, CONTROL_RING_SIZE
from smpxen.xen.xen import VIRQ_CONSOLE

SERIAL_RX_SIZE = 128
U32 = 0xFFFFFFFF


def seq_ahead(seq: int, expected: int) -> int:
    """How far message number seq is past the expected one (numbers wrap at 2**32);
    negative for one already passed."""
    d = (seq - expected) & U32
    return d if d < 1 << 31 else d - (1 << 32)


class CtrlIf:
    def __init__(self, pcpu):
        self.pcpu = pcpu
        self.console_rx: dict[int, bytearray] = {}
        self.early: dict[int, dict[int, tuple[str, bytes]]] = {}   # domid -> seq -> (kind, data)
        self.counts = collections.Counter()

    def _port(self, info) -> ControllerPort:
        return ControllerPort(control_if_of(self.pcpu.ram.mem, info.shared_info_mfn << 12), info.ctrl)

    # ---- a numbered message from the machine (CTRL_REQUEST, CONSOLE_INPUT) -------------
    def on_message(self, kind: str, domid: int, seq: int, data: bytes) -> None:
        pcpu = self.pcpu
        info = pcpu.domains.find(domid)
        if info is None:
            self._refuse(kind, domid, data, "no such domain")
        elif info.processor != pcpu.index:
            pcpu.mailbox.send_ipi(info.processor, kind, domid, seq, data)
            self.counts["forwarded"] += 1
        elif kind == M.CTRL_REQUEST and not info.ctrl.port:
            self._refuse(kind, domid, data, "the domain has no control interface")
        else:
            ahead = seq_ahead(seq, info.ctrl.in_seq)
            if ahead < 0:
                self._refuse(kind, domid, data, "no such domain")      # sent to an earlier one
            elif ahead > 0:
                self.early.setdefault(domid, {})[seq] = (kind, data)
                self.counts["held_for_order"] += 1
            else:
                self._deliver_in_order(domid, info, kind, data)

    def _deliver_in_order(self, domid: int, info, kind: str, data: bytes) -> None:
        """Hand over the expected message, then those that were waiting for it."""
        early = self.early.get(domid, {})
        while True:
            info.ctrl.in_seq = (info.ctrl.in_seq + 1) & U32
            if kind == M.CTRL_REQUEST:
                self._request(domid, data)
            else:
                self._serial_input(domid, data)
            if info.ctrl.in_seq not in early:
                break
            kind, data = early.pop(info.ctrl.in_seq)
        if not early:
            self.early.pop(domid, None)

    def _refuse(self, kind: str, domid: int, data: bytes, why: str) -> None:
        if kind == M.CTRL_REQUEST:
            self._undelivered(domid, data, why)
        else:
            self.counts["console_input_dropped"] += len(data)

    def _notify_guest(self, info) -> None:
        """xu_port_notify: a send on the controller's end of the channel."""
        pcpu = self.pcpu
        rc, dom, port = pcpu.events.tables.send(CONTROLLER_DOMAIN, info.ctrl.remote_port)
        if rc == 0:
            pcpu.events.set_pending(dom, port)

    # ---- the guest notified its controller port (inside its hypercall) ----------------
    def guest_notified(self, v) -> None:
        port = self._port(v.info)
        answered = 0
        while answered < CONTROL_RING_SIZE and port.request_to_read():
            type_, subtype, id_, data = parse_msg(port.read_request())
            if type_ == CMSG_CONSOLE and subtype == CMSG_CONSOLE_DATA:
                if data:
                    self.pcpu.console.write(v, data)
                self.counts["console_requests"] += 1
            else:
                self.counts["unserved_requests"] += 1
            port.write_response(make_msg(type_, subtype, id_))
            answered += 1
        while port.response_to_read():          # at most the requests we wrote
            raw = port.read_response()
            # with the domain's size as the guest answered (a memory request's result)
            self.pcpu.mailbox.send_machine(M.CTRL_RESPONSE, self.pcpu.index, v.domid, raw[2], raw, "",
                                           v.info.tot_pages)
            self.counts["responses"] += 1
        if answered:
            self._notify_guest(v.info)

    # ---- a request from the machine, in its turn -------------------------------------
    def _request(self, domid: int, raw: bytes) -> None:
        pcpu = self.pcpu
        info = pcpu.domains.find(domid)
        v = pcpu.vcpus.get(domid)
        if v is not None and v.ended:
            self._undelivered(domid, raw, f"the domain has {'shut down' if v.ended == 'shutdown' else 'crashed'}")
            return
        port = self._port(info)
        if not port.space_to_write_request():
            self._undelivered(domid, raw, "its control ring is full")
            return
        port.write_request(raw)
        self.counts["requests"] += 1
        self._notify_guest(info)

    def _undelivered(self, domid: int, raw: bytes, why: str) -> None:
        self.pcpu.mailbox.send_machine(M.CTRL_RESPONSE, self.pcpu.index, domid, raw[2], None, why, None)
        self.counts["undelivered"] += 1

    # ---- Domain-0's console input, in its turn ------------------------------------------
    def _serial_input(self, domid: int, data: bytes) -> None:
        buf = self.console_rx.setdefault(domid, bytearray())
        was_empty = not buf
        take = data[:SERIAL_RX_SIZE - len(buf)]
        buf += take
        self.counts["console_input_bytes"] += len(take)
        self.counts["console_input_dropped"] += len(data) - len(take)
        if was_empty and take:
            self.pcpu.events.send_virq(domid, VIRQ_CONSOLE)

    def console_input(self, domid: int, count: int) -> bytes:
        """CONSOLEIO_read: up to count queued bytes, left queued."""
        buf = self.console_rx.get(domid)
        return bytes(buf[:max(0, count)]) if buf else b""

    def console_input_consume(self, domid: int, count: int) -> None:
        buf = self.console_rx.get(domid)
        if buf:
            del buf[:count]

    # ---- moving with the domain (smpxen/pcpu/migration.py) ----------------------------
    def migrate_out(self, domid: int) -> dict:
        """What goes in the move's payload: Domain-0's queued console input, and the
        messages that arrived before their turn."""
        early = self.early.pop(domid, {})
        return {"console_rx": bytes(self.console_rx.pop(domid, b"")),
                "early": [[seq, kind, data] for seq, (kind, data) in early.items()]}

    def migrate_in(self, domid: int, moved: dict) -> None:
        """Input queued before the move goes before input that reached us first (a
        later number: delivered here while the domain was on its way); the messages
        that came along wait with ours for their turn."""
        here = self.console_rx.pop(domid, bytearray())
        buf = bytearray(moved["console_rx"]) + here
        if buf:
            self.console_rx[domid] = buf[:SERIAL_RX_SIZE]
        if moved["early"]:
            early = self.early.setdefault(domid, {})
            for seq, kind, data in moved["early"]:
                early[seq] = (kind, data)
            info = self.pcpu.domains.find(domid)
            if info.ctrl.in_seq in early:
                self._deliver_in_order(domid, info, *early.pop(info.ctrl.in_seq))

    def domain_gone(self, domid: int) -> None:
        """The domain was destroyed here: what waited for its turn is refused."""
        for _seq, (kind, data) in sorted(self.early.pop(domid, {}).items()):
            self._refuse(kind, domid, data, "the domain was destroyed")
        self.console_rx.pop(domid, None)
