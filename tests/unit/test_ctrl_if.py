"""The control interface around the rings: the channel the builder side sets up
(smpxen/domain/ctrl_channel.py), the machine's domain controller
(smpxen/machine/controller.py), Domain-0's console input through console_io, the
console log `smpxen xm console` follows, and the guest runtime's constants."""
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from smpxen.domain import ctrl_channel
from smpxen.domain.builder import DomainBuilder, DomainRequest
from smpxen.domain.ctrl_ring import make_msg, parse_msg
from smpxen.guests.assemble import assemble_guest
from smpxen.hv.event_channel import EvtchnTables
from smpxen.hv.guestmem import GuestMemory
from smpxen.hv.table import do_hypercall
from smpxen.ipc import messages as M
from smpxen.machine.console import ConsoleMux
from smpxen.machine.controller import (CONSOLE_QUEUE_BYTES, ControlError, DomainController,
                                       MAX_QUEUED)
from smpxen.shm.domains import DS_RUNNING, DS_SHUTDOWN, DomainTable
from smpxen.shm.locks import Locks
from smpxen.xen import domain_controller as DC, errno
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.structs import CONTROL_IF_OFFSET, StartInfo
from smpxen.xen.xen import (CONSOLEIO_read, EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound,
                            NR_EVENT_CHANNELS, SIF_INITDOMAIN)


# ---- the channel --------------------------------------------------------------------
def _build(ram, layout, ft, domtable, domid, privileged=False):
    b = DomainBuilder(ram, layout, ft, domtable)
    return b.build(DomainRequest(domid, f"d{domid}", assemble_guest("hello"), 4 << 20, 0, "x", privileged))


def _start_info_port(ram, layout, info) -> int:
    mem = GuestMemory(ram, layout.nr_frames)
    mem.cr3 = info.pt_base_mfn << 12
    return struct.unpack("<H", mem.read(info.start_info_va + StartInfo.domain_controller_evtchn.offset, 2))[0]


def test_channel_connects_domains_to_domain0(machine_ram):
    ram, layout, ft = machine_ram
    dt = DomainTable(ram, layout)
    _build(ram, layout, ft, dt, 0, privileged=True)
    d1, d2 = _build(ram, layout, ft, dt, 1), _build(ram, layout, ft, dt, 2)
    tables = EvtchnTables(ram.mem, layout.evtchn_mfn << 12, dt, Locks(ram.fd).evtchn)
    ctrl_channel.connect_all(ram, layout, Locks(ram.fd), dt, [0, 1, 2])
    top = NR_EVENT_CHANNELS - 1
    assert (d1.ctrl.port, d1.ctrl.remote_port) == (top, top)
    assert (d2.ctrl.port, d2.ctrl.remote_port) == (top, top - 1)     # Domain-0's next free from the top
    assert _start_info_port(ram, layout, d1) == top
    assert tables.status(1, False, 1, top)[1:] == (EVTCHNSTAT_interdomain, 0, top)
    assert tables.status(0, True, 0, top - 1)[1:] == (EVTCHNSTAT_interdomain, 2, top)
    # the ports a kernel allocates itself still start at 1
    assert tables.alloc_unbound(1, False, 0) == (0, 1)
    assert tables.bind_virq(0, 4) == (0, 1)
    ctrl_channel.disconnect(tables, 2)
    assert d2.ctrl.port == 0
    assert tables.status(2, False, 2, top)[1] == EVTCHNSTAT_unbound
    assert tables.status(0, True, 0, top - 1)[1] == 0               # closed


def test_no_domain0_no_controller(machine_ram):
    ram, layout, ft = machine_ram
    dt = DomainTable(ram, layout)
    d1 = _build(ram, layout, ft, dt, 1)
    ctrl_channel.connect_all(ram, layout, Locks(ram.fd), dt, [1])
    assert d1.ctrl.port == 0 and _start_info_port(ram, layout, d1) == 0


# ---- the machine's controller ----------------------------------------------------------
class FakeDomains:
    def __init__(self):
        self.d = {}

    def add(self, domid, port=1023, max_pages=1024):
        self.d[domid] = SimpleNamespace(state=DS_RUNNING, processor=domid % 2, max_pages=max_pages,
                                        tot_pages=max_pages, ctrl=SimpleNamespace(port=port))

    def find(self, domid):
        return self.d.get(domid)


@pytest.fixture
def ctl():
    doms = FakeDomains()
    doms.add(0, port=0)
    doms.add(1)
    sent = []
    c = DomainController(doms, lambda cpu, *parts: sent.append((cpu, *parts)))
    c.sent, c.doms = sent, doms
    return c


def _requests(sent):
    return [p for p in sent if p[1] == M.CTRL_REQUEST]


def test_console_input_goes_out_in_ring_sized_pieces(ctl):
    data = bytes(range(256)) * 2                       # 512 bytes: 9 messages of <= 60
    assert ctl.console_input(1, data) == 512
    reqs = _requests(ctl.sent)
    assert len(reqs) == DC.CONTROL_RING_SIZE            # the ring's worth; the rest waits
    assert ctl.pending(1) == (8, 1)
    got = b""
    for n, (cpu, _kind, src, domid, seq, raw) in enumerate(reqs):
        t, s, i, payload = parse_msg(raw)
        assert (cpu, src, domid, seq, t, s) == (1, M.MACHINE, 1, n, DC.CMSG_CONSOLE, DC.CMSG_CONSOLE_DATA)
        got += payload
    ids = [parse_msg(r[5])[2] for r in reqs]
    assert len(set(ids)) == 8 and DC.CONTROL_MSG_NO_ID not in ids
    ctl.on_response(1, ids[0], make_msg(0, 0, ids[0]), "")   # one answer lets one more out
    last = _requests(ctl.sent)[-1]
    assert ctl.pending(1) == (8, 0)
    assert got + parse_msg(last[5])[3] == data and last[4] == 8


def test_console_input_is_bounded_and_domain0_is_serial(ctl):
    big = b"x" * (CONSOLE_QUEUE_BYTES * 2)
    accepted = ctl.console_input(1, big)
    assert accepted == CONSOLE_QUEUE_BYTES             # at most this much was taken at once
    in_ring = DC.CONTROL_RING_SIZE * DC.CONTROL_MSG_DATA
    assert ctl.console_input(1, big) == in_ring        # the queue holds the bound, the ring the rest
    assert ctl.console_input(1, b"more") == 0          # a guest that does not read drops input
    assert ctl.console_input(0, b"ls\n") == 3
    assert ctl.sent[-1] == (0, M.CONSOLE_INPUT, M.MACHINE, 0, 0, b"ls\n")


def test_requests_refused_at_once(ctl):
    with pytest.raises(ControlError, match="no domain 7"):
        ctl.shutdown(7, 0)
    with pytest.raises(ControlError, match="controller's own domain"):
        ctl.mem_set(0, 100)
    with pytest.raises(ControlError, match="maximum is 4 MiB"):
        ctl.mem_set(1, 1025)
    with pytest.raises(ControlError, match="at least 1 page"):
        ctl.mem_set(1, 0)
    with pytest.raises(ControlError, match="unknown shutdown kind"):
        ctl.shutdown(1, 9)
    ctl.doms.add(2, port=0)
    with pytest.raises(ControlError, match="no control interface"):
        ctl.shutdown(2, 0)
    ctl.doms.d[1].state = DS_SHUTDOWN
    with pytest.raises(ControlError, match="has ended"):
        ctl.console_input(1, b"x")
    assert ctl.sent == []


def test_answers_finish_requests(ctl):
    results = []
    ctl.mem_set(1, 600, results.append)
    ctl.shutdown(1, DC.CMSG_SHUTDOWN_REBOOT, results.append)
    mem_req, shut_req = (r[5] for r in _requests(ctl.sent))
    t, s, i, payload = parse_msg(mem_req)
    assert (t, s, DC.MemRequest.from_buffer_copy(payload).target) == (DC.CMSG_MEM_REQUEST, 0, 600)
    answer = DC.MemRequest(600, 1)
    ctl.on_response(1, i, make_msg(t, s, i, bytes(answer)), "", 600)
    assert results == [{"ok": True, "domid": 1, "target_pages": 600, "tot_pages": 600, "status": 1}]
    ctl.on_response(1, parse_msg(shut_req)[2], None, "the domain has shut down")
    assert results[-1] == {"ok": False, "error": "domain 1: not delivered: the domain has shut down"}
    ctl.on_response(1, 99, None, "stray")             # an answer to nothing is counted, not fatal
    assert ctl.counts["unexpected_responses"] == 1


def test_a_domain_that_ends_fails_what_it_did_not_answer(ctl):
    results = []
    for _ in range(10):
        ctl.shutdown(1, 0, results.append)
    ctl.domain_ended(1, "crashed")
    assert len(results) == 10 and all(not r["ok"] and r["ended"] == "crashed" for r in results)
    assert results[0]["error"] == "domain 1 crashed before it answered"
    assert ctl.pending(1) == (0, 0)


def test_a_silent_domain_cannot_make_the_controller_queue_for_ever(ctl):
    for _ in range(DC.CONTROL_RING_SIZE + MAX_QUEUED):
        ctl.shutdown(1, 0)
    with pytest.raises(ControlError, match="not answering"):
        ctl.shutdown(1, 0)


# ---- Domain-0's console input through console_io ------------------------------------------
class FakeHv:
    def __init__(self, mem, domid):
        self.mem = mem
        self.console_io_for_all = False
        self.current = SimpleNamespace(domid=domid, privileged=domid == 0)
        self.queued = bytearray(b"hello\n")

    def console_input(self, count):
        return bytes(self.queued[:count])

    def console_input_consume(self, count):
        del self.queued[:count]


def test_consoleio_read(build_domain):
    ram, layout, ft, info = build_domain()
    mem = GuestMemory(ram, layout.nr_frames)
    mem.cr3 = info.pt_base_mfn << 12
    hv = FakeHv(mem, 0)
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_read, 4, 0xC0000000, 0, 0) == 4
    assert mem.read(0xC0000000, 4) == b"hell" and hv.queued == b"o\n"
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_read, 16, 0x1000, 0, 0) == -errno.EFAULT
    assert hv.queued == b"o\n"                         # a faulting read consumes nothing
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_read, 16, 0xC0000000, 0, 0) == 2
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_read, 16, 0xC0000000, 0, 0) == 0
    assert do_hypercall(FakeHv(mem, 1), Hypercall.console_io, CONSOLEIO_read, 4, 0xC0000000, 0, 0) \
        == -errno.EPERM


# ---- the console log xm console follows --------------------------------------------------
def test_console_log_follows_from_an_offset(monkeypatch):
    from smpxen.machine import console
    monkeypatch.setattr(console, "LOG_BYTES", 8)
    mux = ConsoleMux({1: "a"}, quiet=True)
    assert mux.output_since(1, 0) == (0, b"", 0)
    mux.feed(1, b"abc")
    assert mux.output_since(1, 0) == (3, b"abc", 0)
    mux.feed(1, b"defghij")                            # 10 bytes: the first 2 left the log
    assert mux.output_since(1, 3) == (10, b"defghij", 0)
    assert mux.output_since(1, 0) == (10, b"cdefghij", 2)
    assert mux.output_since(1, 10) == (10, b"", 0)
    assert mux.output_since(1, 99) == (10, b"", 0)


# ---- the guest runtime uses the same numbers ----------------------------------------------
def test_runtime_constants_match_the_abi():
    src = (Path(__file__).resolve().parents[2] / "smpxen/guests/asm/runtime.s").read_text()
    equ = {m[1]: int(m[2], 0) for m in re.finditer(r"^\.equ (\w+), (\S+)", src, re.M)}
    ci = CONTROL_IF_OFFSET
    assert equ["CI_TX_RING"] == ci + DC.TX_RING_OFFSET
    assert equ["CI_RX_RING"] == ci + DC.RX_RING_OFFSET
    assert equ["CI_TX_REQ_PROD"] == ci + DC.TX_REQ_PROD_OFFSET
    assert equ["CI_TX_RESP_PROD"] == ci + DC.TX_RESP_PROD_OFFSET
    assert equ["CI_RX_REQ_PROD"] == ci + DC.RX_REQ_PROD_OFFSET
    assert equ["CI_RX_RESP_PROD"] == ci + DC.RX_RESP_PROD_OFFSET
    for name in ("CONTROL_RING_SIZE", "CONTROL_MSG_DATA", "CONTROL_MSG_NO_ID", "CMSG_CONSOLE",
                 "CMSG_CONSOLE_DATA", "CMSG_SHUTDOWN", "CMSG_MEM_REQUEST", "CMSG_MEM_REQUEST_SET"):
        assert equ[name] == getattr(DC, name), name
    assert equ["START_INFO_CTRL_EVTCHN"] == StartInfo.domain_controller_evtchn.offset
    assert equ["START_INFO_FLAGS"] == StartInfo.flags.offset
    assert equ["SIF_INITDOMAIN"] == SIF_INITDOMAIN


# ---- the controller's hands on a PCPU (smpxen/pcpu/ctrl_if.py) ------------------------------
class FakePcpu:
    """What CtrlIf uses of a PCPU: one page of "RAM" holding domain 1's shared_info."""

    def __init__(self, index=0):
        from smpxen.pcpu.ctrl_if import CtrlIf
        self.index = index
        self.ram = SimpleNamespace(mem=bytearray(4096))
        self.info = SimpleNamespace(processor=index, shared_info_mfn=0, tot_pages=1024,
                                    ctrl=SimpleNamespace(port=1023, remote_port=1023, tx_req_cons=0,
                                                         tx_resp_prod=0, rx_req_prod=0, rx_resp_cons=0,
                                                         in_seq=0))
        self.vcpus = {1: SimpleNamespace(domid=1, info=self.info, ended=None)}
        dom0 = SimpleNamespace(processor=index, ctrl=SimpleNamespace(port=0, in_seq=0))
        self.domains = SimpleNamespace(find=lambda d: self.info if d == 1 else (dom0 if d == 0 else None))
        self.seq = {0: 0, 1: 0}
        self.ipis, self.machine, self.console_out, self.pending, self.virqs = [], [], [], [], []
        self.mailbox = SimpleNamespace(send_ipi=lambda *a: self.ipis.append(a),
                                       send_machine=lambda *a: self.machine.append(a))
        tables = SimpleNamespace(send=lambda dom, port: (0, 1, 1023) if (dom, port) == (0, 1023) else (-22, 0, 0))
        self.events = SimpleNamespace(tables=tables, set_pending=lambda d, p: self.pending.append((d, p)),
                                      send_virq=lambda d, v: self.virqs.append((d, v)))
        self.console = SimpleNamespace(write=lambda v, data: self.console_out.append(data))
        self.ctrl_if = CtrlIf(self)
        from smpxen.domain.ctrl_ring import control_if_of
        from support.ctrl_guest import GuestPort
        self.guest = GuestPort(control_if_of(self.ram.mem, 0))

    def request(self, domid, raw):
        """The machine's next CTRL_REQUEST to domid."""
        self.ctrl_if.on_message(M.CTRL_REQUEST, domid, self.seq.get(domid, 0), raw)
        self.seq[domid] = self.seq.get(domid, 0) + 1

    def console_input(self, domid, data):
        self.ctrl_if.on_message(M.CONSOLE_INPUT, domid, self.seq[domid], data)
        self.seq[domid] += 1


def test_pcpu_serves_what_the_guest_sent():
    p = FakePcpu()
    for i in range(8):
        assert p.guest.send(make_msg(DC.CMSG_CONSOLE, DC.CMSG_CONSOLE_DATA, 0xFF, b"line %d\n" % i))
    assert not p.guest.send(make_msg(DC.CMSG_CONSOLE, 0, 0xFF, b"x"))     # the ring is full
    p.ctrl_if.guest_notified(p.vcpus[1])
    assert p.console_out == [b"line %d\n" % i for i in range(8)]
    assert len(p.guest.reap_responses()) == 8 and p.pending == [(1, 1023)]   # answered, notified
    p.guest.send(make_msg(DC.CMSG_BLKIF_FE, 32, 3, b"\x01\x00\x00\x00"))       # a service not offered
    p.ctrl_if.guest_notified(p.vcpus[1])
    (answer,) = p.guest.reap_responses()
    assert parse_msg(answer) == (DC.CMSG_BLKIF_FE, 32, 3, b"")
    assert p.ctrl_if.counts["unserved_requests"] == 1 and p.machine == []


def test_pcpu_delivers_requests_and_returns_answers():
    p = FakePcpu()
    for i in range(9):
        p.request(1, make_msg(DC.CMSG_SHUTDOWN, 0, i))
    refused = p.machine.pop()
    assert refused[:5] == (M.CTRL_RESPONSE, 0, 1, 8, None) and "full" in refused[5]
    taken = p.guest.take_requests()
    assert [parse_msg(r)[2] for r in taken] == list(range(8)) and len(p.pending) == 8
    for raw in taken[:3]:
        p.guest.send_response(raw)
    p.ctrl_if.guest_notified(p.vcpus[1])
    assert [(m[3], m[4], m[6]) for m in p.machine] == [(i, taken[i], 1024) for i in range(3)]
    p.vcpus[1].ended = "crashed"
    p.request(1, make_msg(DC.CMSG_SHUTDOWN, 0, 9))
    assert p.machine[-1][4] is None and "crashed" in p.machine[-1][5]
    p.request(5, make_msg(DC.CMSG_SHUTDOWN, 0, 10))
    assert p.machine[-1][4] is None and p.machine[-1][5] == "no such domain"
    p.ctrl_if.on_message(M.CTRL_REQUEST, 1, 3, make_msg(DC.CMSG_SHUTDOWN, 0, 11))
    assert p.machine[-1][5] == "no such domain"         # a number passed: sent to an earlier domain 1
    p.info.ctrl.port = 0
    p.request(1, make_msg(DC.CMSG_SHUTDOWN, 0, 12))
    assert p.machine[-1][5] == "the domain has no control interface"


def test_pcpu_keeps_a_domains_messages_in_order():
    p = FakePcpu()
    for seq in (2, 1, 4):
        p.ctrl_if.on_message(M.CTRL_REQUEST, 1, seq, make_msg(DC.CMSG_SHUTDOWN, 0, seq))
    assert p.guest.take_requests() == [] and p.info.ctrl.in_seq == 0        # waiting for 0
    p.ctrl_if.on_message(M.CTRL_REQUEST, 1, 0, make_msg(DC.CMSG_SHUTDOWN, 0, 0))
    assert [parse_msg(r)[2] for r in p.guest.take_requests()] == [0, 1, 2] and p.info.ctrl.in_seq == 3
    moved = p.ctrl_if.migrate_out(1)                     # 4 goes along with the domain
    assert moved["early"] == [[4, M.CTRL_REQUEST, make_msg(DC.CMSG_SHUTDOWN, 0, 4)]] and not p.ctrl_if.early
    p.ctrl_if.migrate_in(1, moved)
    p.ctrl_if.on_message(M.CTRL_REQUEST, 1, 3, make_msg(DC.CMSG_SHUTDOWN, 0, 3))
    assert [parse_msg(r)[2] for r in p.guest.take_requests()] == [3, 4]
    p.ctrl_if.on_message(M.CTRL_REQUEST, 1, 6, make_msg(DC.CMSG_SHUTDOWN, 0, 6))
    p.ctrl_if.domain_gone(1)                             # destroyed: what waited is refused
    assert p.machine[-1][3:6] == (6, None, "the domain was destroyed") and not p.ctrl_if.early


def test_pcpu_forwards_what_is_no_longer_its_own():
    p = FakePcpu()
    del p.vcpus[1]
    p.info.processor = 3                                 # moved away
    p.request(1, make_msg(DC.CMSG_SHUTDOWN, 0, 1))
    p.console_input(1, b"abc")
    assert p.ipis == [(3, M.CTRL_REQUEST, 1, 0, make_msg(DC.CMSG_SHUTDOWN, 0, 1)),
                      (3, M.CONSOLE_INPUT, 1, 1, b"abc")]
    p.info.processor = 0                                 # on its way here: not running anywhere
    p.info.ctrl.in_seq = 2
    p.request(1, make_msg(DC.CMSG_SHUTDOWN, 0, 2))
    assert len(p.guest.take_requests()) == 1 and len(p.ipis) == 2


def test_domain0_console_input_is_xens_serial_ring():
    from smpxen.pcpu.ctrl_if import SERIAL_RX_SIZE
    from smpxen.xen.xen import VIRQ_CONSOLE
    p = FakePcpu()
    p.console_input(0, b"ab")
    p.console_input(0, b"cd")
    assert p.virqs == [(0, VIRQ_CONSOLE)]               # raised when it stops being empty
    assert p.ctrl_if.console_input(0, 3) == b"abc"
    p.ctrl_if.console_input_consume(0, 3)
    p.console_input(0, b"x" * 200)
    assert p.ctrl_if.counts["console_input_dropped"] == 200 - (SERIAL_RX_SIZE - 1)
    moving = p.ctrl_if.migrate_out(0)
    assert len(moving["console_rx"]) == SERIAL_RX_SIZE and p.ctrl_if.console_input(0, 500) == b""
    q = FakePcpu(1)
    q.console_input(0, b"late")              # the next number, reached the new PCPU first
    q.ctrl_if.migrate_in(0, {"console_rx": b"early", "early": []})
    assert q.ctrl_if.console_input(0, 100) == b"earlylate"


# ---- the verbs' requests, served on the machine's main thread ---------------------------
def _serve(ctl, op, *args):
    from smpxen.machine.controller import REPLIES
    token, q = REPLIES.open()
    try:
        ctl.serve({"token": token, "op": op, "args": list(args)})
        return q.get_nowait() if not q.empty() else None
    finally:
        REPLIES.close(token)


def test_serve_answers_the_verbs(ctl):
    mux = ConsoleMux({1: "a"}, quiet=True)
    mux.feed(1, b"hello\n")
    records = {1: SimpleNamespace(ended=None)}
    ctl.attach(mux, records)
    assert _serve(ctl, "console_read", 1, 0) == {"ok": True, "offset": 6, "data": b"hello\n", "lost": 0,
                                                 "ended": None}
    assert _serve(ctl, "console_input", 1, b"ls\n") == {"ok": True, "accepted": 3}
    assert _serve(ctl, "mem_set", 1, 0) == {"ok": False, "error": "memory target must be at least 1 page, got 0"}
    from smpxen.machine.controller import REPLIES
    token, q = REPLIES.open()
    ctl.serve({"token": token, "op": "shutdown", "args": [1, 1]})
    ctl.domain_ended(1, "shutdown")                               # it shut down before answering
    assert q.get_nowait() == {"ok": False, "error": "domain 1 shut down before it answered", "ended": "shutdown"}
    REPLIES.close(token)
    assert _serve(ctl, "state", 1) == {"ok": True, "ended": None}
    del records[1]                                                # destroyed since the verb found it
    assert _serve(ctl, "state", 1)["ended"]["how"] == "destroyed"
    assert _serve(ctl, "console_read", 1, 6)["ended"]["how"] == "destroyed"
    assert _serve(ctl, "frobnicate")["ok"] is False
    REPLIES.put(12345, {"ok": True})                              # a worker that gave up: dropped


def test_a_domain_built_at_run_time_is_attached_at_the_controllers_next_number(machine_ram):
    """Its id may have been used before: the first message to it is the next of that
    id's sequence, and the PCPU must expect exactly that one (smpxen/pcpu/ctrl_if.py)."""
    ram, layout, ft = machine_ram
    dt = DomainTable(ram, layout)
    _build(ram, layout, ft, dt, 0, privileged=True)
    info = _build(ram, layout, ft, dt, 3)
    sent = []
    c = DomainController(dt, lambda cpu, *parts: sent.append(parts), ram)
    c.next_seq[3] = 41                                           # an earlier domain 3 was sent 41
    c.serve({"token": 0, "op": "attach", "args": [3, 1000, 900]})
    assert (info.ctrl.port, info.ctrl.remote_port, info.ctrl.in_seq) == (1000, 900, 41)
    info.state = DS_RUNNING
    c.console_input(3, b"x")
    assert sent[-1][:4] == (M.CTRL_REQUEST, M.MACHINE, 3, 41)


def test_the_endpoint_learns_that_a_client_left():
    import zmq

    from smpxen.control.endpoint import ControlEndpoint

    class Router:
        def __init__(self):
            self.away = {b"gone"}

        def send_multipart(self, frames, flags=0):
            if frames[0] in self.away:
                raise zmq.ZMQError(zmq.EHOSTUNREACH)

    ep = ControlEndpoint.__new__(ControlEndpoint)
    ep.router, ep.gone = Router(), set()
    ep._from_worker(["client", b"here", b"x"])
    ep._from_worker(["client", b"gone", b"x"])
    assert ep.gone == {b"gone"}                     # its verb sees Session.client_gone
    ep._from_worker(["client_last", b"gone", b"x"])
    assert ep.gone == set()                         # forgotten with its request's last answer


def test_a_bug_in_serving_a_verb_is_one_line_not_the_machines_end(ctl, capsys):
    ctl.attach(None, {1: SimpleNamespace(ended=None)})                # no console: reading it fails
    got = _serve(ctl, "console_read", 1, 0)
    assert got["ok"] is False and got["error"].startswith("internal error in the domain controller (console_read)")
    assert "Traceback" in capsys.readouterr().err
