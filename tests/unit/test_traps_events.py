"""Bounce frames (smpxen/pcpu/bounce.py) and the event-channel tables
(smpxen/hv/event_channel.py)."""
import ctypes

from hypothesis import given, settings
from hypothesis import strategies as st

from smpxen.hv.event_channel import ECS_FREE, ECS_INTERDOMAIN, ECS_UNBOUND, DomainPorts, EvtchnTables
from smpxen.pcpu.bounce import bounce_frame
from smpxen.pcpu.events import evtchn_set_pending
from smpxen.shm.domains import DomainInfo
from smpxen.xen import errno
from smpxen.xen.structs import SharedInfo
from smpxen.xen.xen import DOMID_SELF, VIRQ_TIMER, EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound

R1CS, R1DS, R3CS, R3DS = 0x0819, 0x0821, 0x082B, 0x0833


# ---- bounce frame arithmetic -------------------------------------------------------
def test_bounce_frame_same_ring_uses_current_stack():
    ss, sp, words = bounce_frame(0x1000, R1CS, 0x202, 0x8000, R1DS, R1DS, 0x9000)
    assert (ss, sp, words) == (R1DS, 0x8000 - 12, [0x1000, R1CS, 0x202])


def test_bounce_frame_from_ring3_uses_kernel_stack_and_pushes_ss_esp():
    ss, sp, words = bounce_frame(0x1000, R3CS, 0x202, 0x5000, R3DS, R1DS, 0x9000, error_code=4,
                                 cr2=0xC0380000)
    assert ss == R1DS and sp == 0x9000 - 28
    assert words == [0xC0380000, 4, 0x1000, R3CS, 0x202, 0x5000, R3DS]


def test_bounce_frame_failsafe_segments_lowest():
    _, sp, words = bounce_frame(0x1000, R1CS, 0x202, 0x8000, R1DS, R1DS, 0x9000,
                                segments=(1, 2, 3, 4))
    assert words == [1, 2, 3, 4, 0x1000, R1CS, 0x202] and sp == 0x8000 - 28


# ---- evtchn_set_pending order ----------------------------------------------------
def test_set_pending_order_and_mask():
    s = SharedInfo()
    assert evtchn_set_pending(s, 37) is True
    assert s.evtchn_pending[1] == 1 << 5 and s.evtchn_pending_sel == 2
    assert s.vcpu_data[0].evtchn_upcall_pending == 1
    assert evtchn_set_pending(s, 37) is False           # already pending: no new edge
    s.evtchn_mask[0] = 1 << 3
    assert evtchn_set_pending(s, 3) is False            # masked: pending bit only
    assert s.evtchn_pending[0] == 1 << 3 and s.evtchn_pending_sel == 2


# ---- event-channel tables ---------------------------------------------------------
class FakeDomains:
    def __init__(self, ids, privileged=()):
        self.infos = {}
        for d in ids:
            info = DomainInfo()
            info.domid = d
            info.privileged = d in privileged
            self.infos[d] = info
        self.order = list(ids)

    def find(self, domid):
        return self.infos.get(domid)

    def slot_of(self, domid):
        return self.order.index(domid)


def make_tables(ids=(0, 1, 2), privileged=(0,)):
    buf = bytearray(len(ids) * ctypes.sizeof(DomainPorts))
    return EvtchnTables(buf, 0, FakeDomains(ids, privileged))


def test_alloc_unbound_then_bind_interdomain():
    t = make_tables()
    rc, p = t.alloc_unbound(1, False, 2)
    assert (rc, p) == (0, 1)                             # port 0 is VIRQ_MISDIRECT
    assert t.status(1, False, DOMID_SELF, p)[:3] == (0, EVTCHNSTAT_unbound, 2)
    # domain 2 binds to it: dom1 must be SELF for an unprivileged caller
    assert t.bind_interdomain(2, False, 1, 0, 1, p)[0] == -errno.EPERM
    rc, p1, p2 = t.bind_interdomain(2, False, DOMID_SELF, 0, 1, p)
    assert (rc, p2) == (0, p) and p1 == 1
    assert t.send(2, p1) == (0, 1, p)
    assert t.send(1, p) == (0, 2, p1)
    assert t.status(1, False, DOMID_SELF, p) == (0, EVTCHNSTAT_interdomain, 2, p1)
    # binding again returns the existing pairing
    assert t.bind_interdomain(2, False, DOMID_SELF, p1, 1, 0) == (0, p1, p)
    # closing one end leaves the other unbound, awaiting us
    assert t.close(2, False, DOMID_SELF, p1) == 0
    assert t.status(1, False, DOMID_SELF, p)[:3] == (0, EVTCHNSTAT_unbound, 2)
    assert t.send(1, p)[0] == -errno.EINVAL


def test_evtchn_errors_and_privilege():
    t = make_tables()
    assert t.bind_interdomain(1, False, DOMID_SELF, 0, 2, 0)[0] == -errno.EPERM   # free remote port
    assert t.bind_interdomain(0, True, 1, 0, 2, 0)[0] == 0                          # dom0 may
    assert t.alloc_unbound(1, False, 99) == (-errno.ESRCH, 0)
    assert t.close(1, False, DOMID_SELF, 0) == -errno.EINVAL                        # port 0
    assert t.close(1, False, 2, 1) == -errno.EPERM
    assert t.status(1, False, 2, 1)[0] == -errno.EPERM
    assert t.bind_virq(1, 7) == (-errno.EINVAL, 0)
    assert t.bind_virq(1, 0) == (0, 0)
    rc, port = t.bind_virq(1, VIRQ_TIMER)
    assert rc == 0 and t.bind_virq(1, VIRQ_TIMER) == (0, port)
    assert t.virq_port(1, VIRQ_TIMER) == port
    assert t.close(1, False, DOMID_SELF, port) == 0 and t.virq_port(1, VIRQ_TIMER) == 0
    assert t.bind_pirq(1, 3)[0] < 0 and t.bind_pirq(1, 200)[0] == -errno.EINVAL
    assert t.send(1, 5)[0] == -errno.EINVAL

ops = st.lists(st.tuples(st.sampled_from(["alloc", "bind", "close", "virq"]),
                         st.integers(0, 2), st.integers(0, 2), st.integers(0, 6)),
               max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_evtchn_tables_stay_consistent(seq):
    """Random op sequences: every interdomain port's peer points back at it, VIRQ map
    entries name VIRQ ports, unbound ports name existing domains."""
    t = make_tables()
    for op, a, b, n in seq:
        if op == "alloc":
            t.alloc_unbound(a, a == 0, b)
        elif op == "bind":
            t.bind_interdomain(a, a == 0, DOMID_SELF, n % 4, b, (n * 7) % 5)
        elif op == "close":
            t.close(a, a == 0, DOMID_SELF, n)
        else:
            t.bind_virq(a, n)
    for d in (0, 1, 2):
        table = t.ports(d)
        for port in range(1, 64):
            e = table[port]
            if e.state == ECS_INTERDOMAIN:
                peer = t.ports(e.remote_dom)[e.remote_port]
                assert peer.state == ECS_INTERDOMAIN
                assert (peer.remote_dom, peer.remote_port) == (d, port)
            elif e.state == ECS_UNBOUND:
                assert e.remote_dom in (0, 1, 2)
        info = t.domains.find(d)
        for virq, port in enumerate(info.virq_to_evtchn[:7]):
            if port:
                assert table[port].virq == virq and table[port].state != ECS_FREE
