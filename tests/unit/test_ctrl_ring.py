"""The control interface's rings (smpxen/domain/ctrl_ring.py): the controller's end
against the XenLinux-style guest end (tests/support/ctrl_guest.py), over every
interleaving hypothesis finds, with free-running u32 indices that wrap."""
import ctypes
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from smpxen.domain.ctrl_ring import ControllerPort, make_msg, parse_msg
from smpxen.xen.domain_controller import CONTROL_RING_SIZE, ControlIf
from support.ctrl_guest import GuestPort

U32 = 0xFFFFFFFF


def _indices():
    return SimpleNamespace(tx_req_cons=0, tx_resp_prod=0, rx_req_prod=0, rx_resp_cons=0)


def _msg(n: int, kind: int) -> bytes:
    return make_msg(kind, 0, n & 0xFF, n.to_bytes(4, "little"))


def _seq(raw: bytes) -> int:
    return int.from_bytes(parse_msg(raw)[3], "little")


class Rings(RuleBasedStateMachine):
    """Both directions at once; each side acts in any order the protocol allows."""

    @initialize(start=st.one_of(st.integers(0, U32), st.integers(U32 - 20, U32)))
    def setup(self, start):
        self.buf = bytearray(ctypes.sizeof(ControlIf))
        ring = ControlIf.from_buffer(self.buf)
        ring.tx_req_prod = ring.tx_resp_prod = ring.rx_req_prod = ring.rx_resp_prod = start
        self.ctl = ControllerPort(ring, _indices())
        self.ctl.connect()
        self.guest = GuestPort(ring)
        # guest -> controller
        self.g_sent = 0          # requests the guest put in the ring
        self.c_read = []         # requests the controller read, not yet answered
        self.c_reads = 0
        self.g_reaped = 0        # responses the guest took back
        # controller -> guest
        self.c_sent = 0
        self.g_taken = []        # requests the guest copied out, not yet answered
        self.g_takes = 0
        self.c_got = 0           # responses the controller read

    # ---- guest -> controller --------------------------------------------------------
    @rule()
    def guest_sends(self):
        ok = self.guest.send(_msg(self.g_sent, 1))
        assert ok == (self.g_sent - self.g_reaped < CONTROL_RING_SIZE)
        if ok:
            self.g_sent += 1

    @rule()
    def controller_reads_request(self):
        avail = self.c_reads < self.g_sent
        assert self.ctl.request_to_read() == avail
        if avail:
            raw = self.ctl.read_request()
            assert _seq(raw) == self.c_reads          # in order, never overwritten
            self.c_read.append(raw)
            self.c_reads += 1

    @precondition(lambda self: self.c_read)
    @rule()
    def controller_answers(self):
        assert self.ctl.space_to_write_response()
        req = self.c_read.pop(0)
        t, s, i, data = parse_msg(req)
        self.ctl.write_response(make_msg(t, s, i, data))

    @rule()
    def guest_reaps(self):
        for raw in self.guest.reap_responses():
            assert _seq(raw) == self.g_reaped
            self.g_reaped += 1

    # ---- controller -> guest --------------------------------------------------------
    @rule()
    def controller_sends(self):
        room = self.c_sent - self.c_got < CONTROL_RING_SIZE
        assert self.ctl.space_to_write_request() == room
        if room:
            self.ctl.write_request(_msg(self.c_sent, 2))
            self.c_sent += 1

    @rule()
    def guest_takes(self):
        for raw in self.guest.take_requests():
            assert _seq(raw) == self.g_takes
            self.g_taken.append(raw)
            self.g_takes += 1

    @precondition(lambda self: self.g_taken)
    @rule()
    def guest_answers(self):
        self.guest.send_response(self.g_taken.pop(0))

    @rule()
    def controller_reads_response(self):
        answered = self.g_takes - len(self.g_taken)
        assert self.ctl.response_to_read() == (self.c_got < answered)
        if self.c_got < answered:
            assert _seq(self.ctl.read_response()) == self.c_got
            self.c_got += 1

    @invariant()
    def bounded(self):
        if hasattr(self, "ctl"):
            assert 0 <= self.g_sent - self.g_reaped <= CONTROL_RING_SIZE
            assert 0 <= self.ctl.outstanding_requests() <= CONTROL_RING_SIZE
            assert self.ctl.outstanding_requests() == self.c_sent - self.c_got


TestRings = Rings.TestCase
TestRings.settings = settings(max_examples=200, stateful_step_count=80, deadline=None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, U32), st.integers(0, U32)), min_size=1, max_size=30))
def test_scribbling_guest_cannot_overrun_the_controller(writes):
    """Whatever the guest writes into its producer indices, the controller reads at
    most CONTROL_RING_SIZE requests beyond what it answered, and never more
    responses than requests it wrote."""
    buf = bytearray(ctypes.sizeof(ControlIf))
    ring = ControlIf.from_buffer(buf)
    ctl = ControllerPort(ring, _indices())
    ctl.connect()
    for _ in range(3):
        ctl.write_request(make_msg(7, 0, 1))
    for tx_req_prod, rx_resp_prod in writes:
        ring.tx_req_prod, ring.rx_resp_prod = tx_req_prod, rx_resp_prod
        unanswered = 0
        while ctl.request_to_read():
            ctl.read_request()
            unanswered += 1
            assert unanswered <= CONTROL_RING_SIZE
        for _ in range(unanswered):
            ctl.write_response(make_msg(0, 0, 0))
        while ctl.response_to_read():
            ctl.read_response()
        assert 0 <= ctl.outstanding_requests() <= 3


def test_message_helpers():
    raw = make_msg(7, 0, 5, b"\x01\x02")
    assert len(raw) == 64 and parse_msg(raw) == (7, 0, 5, b"\x01\x02")
    long = bytearray(raw)
    long[3] = 200                       # a length beyond msg[60] is clipped
    assert len(parse_msg(bytes(long))[3]) == 60
