"""Console input reaches a domain in the order it was typed while the domain moves
between PCPUs: the machine's DomainController (smpxen/machine/controller.py) and
each PCPU's CtrlIf (smpxen/pcpu/ctrl_if.py), dispatched through the mailbox's
MESSAGE_HANDLERS, over a simulated network with ZeroMQ's guarantee and no more:
messages keep their order between one sender and one receiver, and nothing is
promised across pairs. Moves hand the control interface's part of the migration
payload from one PCPU to the next (smpxen/pcpu/migration.py does the rest)."""
import collections
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings, strategies as st

from smpxen.domain.ctrl_ring import control_if_of, make_msg, parse_msg
from smpxen.ipc import messages as M
from smpxen.machine.controller import DomainController
from smpxen.pcpu.ctrl_if import CtrlIf
from smpxen.pcpu.mailbox import MESSAGE_HANDLERS
from smpxen.shm.domains import DS_RUNNING, DomainInfo
from support.ctrl_guest import GuestPort

PAGE = 4096
DOMU, DOM0 = 1, 0
PORT = 1023
MOVE = "test_move"            # the control interface's share of IPI_MIGRATE


class Net:
    """One FIFO per (sender, receiver) pair."""

    def __init__(self):
        self.links: dict[tuple[int, int], collections.deque] = collections.defaultdict(collections.deque)

    def push(self, src: int, dst: int, msg: list) -> None:
        self.links[src, dst].append(msg)

    def busy(self) -> list[tuple[int, int]]:
        return sorted(k for k, q in self.links.items() if q)


class Pcpu:
    """What CtrlIf and the mailbox's handlers use of a PCPU."""

    def __init__(self, index, world):
        self.index = index
        self.ram = world.ram
        self.domains = world.domains
        self.vcpus = {}
        net = world.net
        self.mailbox = SimpleNamespace(
            send_ipi=lambda target, kind, *payload: net.push(index, target, [kind, index, *payload]),
            send_machine=lambda *parts: net.push(index, M.MACHINE, list(parts)))
        self.events = SimpleNamespace(
            tables=SimpleNamespace(send=lambda dom, port: (0, DOMU, PORT)),
            set_pending=lambda dom, port: None, send_virq=lambda dom, virq: None)
        self.console = SimpleNamespace(write=lambda v, data: None)
        self.ctrl_if = CtrlIf(self)


class World:
    """Domain-0 and one domU with a control interface, on `cpus` PCPUs; the machine's
    controller; the two guests' ends (the domU's ring, Domain-0's CONSOLEIO_read)."""

    def __init__(self, cpus: int):
        self.ram = SimpleNamespace(mem=bytearray(2 * PAGE))
        self.infos = {}
        for domid in (DOM0, DOMU):
            info = DomainInfo()
            info.domid, info.state, info.processor, info.shared_info_mfn = domid, DS_RUNNING, domid % cpus, domid
            info.tot_pages = info.max_pages = 1024
            self.infos[domid] = info
        self.infos[DOMU].ctrl.port = self.infos[DOMU].ctrl.remote_port = PORT
        self.domains = SimpleNamespace(find=self.infos.get)
        self.net = Net()
        self.pcpus = [Pcpu(i, self) for i in range(cpus)]
        for domid, info in self.infos.items():
            self.pcpus[info.processor].vcpus[domid] = SimpleNamespace(domid=domid, info=info, ended=None)
        self.controller = DomainController(
            self.domains, lambda cpu, *parts: self.net.push(M.MACHINE, cpu, list(parts)))
        self.guest = GuestPort(control_if_of(self.ram.mem, DOMU * PAGE))
        self.typed = {DOM0: b"", DOMU: b""}
        self.got = {DOM0: b"", DOMU: b""}
        self.lines = 0

    # ---- what happens ---------------------------------------------------------------
    def type_line(self, domid: int) -> bool:
        line = b"line %03d\n" % self.lines
        if domid == DOM0 and len(self.typed[DOM0]) - len(self.got[DOM0]) + len(line) > 120:
            return False            # Xen's serial ring keeps 128 bytes; more would be dropped
        self.lines += 1
        assert self.controller.console_input(domid, line) == len(line)
        self.typed[domid] += line
        return True

    def deliver(self, link) -> None:
        src, dst = link
        msg = self.net.links[link].popleft()
        if dst == M.MACHINE:
            assert msg[0] == M.CTRL_RESPONSE
            self.controller.on_response(*msg[2:])
        elif msg[0] == MOVE:
            pcpu, domid = self.pcpus[dst], msg[2]
            pcpu.vcpus[domid] = SimpleNamespace(domid=domid, info=self.infos[domid], ended=None)
            pcpu.ctrl_if.migrate_in(domid, msg[3])
        else:
            MESSAGE_HANDLERS[msg[0]](self.pcpus[dst], msg)

    def move(self, domid: int, target: int) -> None:
        """migrate_out on the PCPU hosting it (none while it is on its way)."""
        info = self.infos[domid]
        src = self.pcpus[info.processor]
        if domid not in src.vcpus or target == src.index:
            return
        moved = src.ctrl_if.migrate_out(domid)
        v = src.vcpus.pop(domid)
        info.processor = target
        del v
        self.net.push(src.index, target, [MOVE, src.index, domid, moved])

    def run_guest(self, domid: int) -> None:
        """The domain runs where it is hosted: the domU answers what its ring holds and
        notifies; Domain-0 reads its console input."""
        info = self.infos[domid]
        pcpu = self.pcpus[info.processor]
        v = pcpu.vcpus.get(domid)
        if v is None:
            return
        if domid == DOM0:
            data = pcpu.ctrl_if.console_input(DOM0, 4096)
            pcpu.ctrl_if.console_input_consume(DOM0, len(data))
            self.got[DOM0] += data
            return
        for raw in self.guest.take_requests():
            type_, subtype, id_, data = parse_msg(raw)
            self.got[DOMU] += data
            self.guest.send_response(make_msg(type_, subtype, id_))
        pcpu.ctrl_if.guest_notified(v)

    def settle(self) -> None:
        for _ in range(10_000):
            busy = self.net.busy()
            if not busy:
                self.run_guest(DOM0)
                self.run_guest(DOMU)
                if not self.net.busy():
                    return
            for link in busy:
                self.deliver(link)
        raise AssertionError("the messages never settled")


def test_a_forwarded_request_is_not_overtaken():
    """The shape of the CI failure: request 0 goes to the domain's old PCPU, the
    domain moves, request 1 goes straight to the new PCPU and arrives first."""
    w = World(cpus=2)
    w.type_line(DOMU)                               # -> pcpu 1, which hosts the domU
    w.move(DOMU, 0)
    w.type_line(DOMU)                               # -> pcpu 0, named by the domain table
    w.deliver((M.MACHINE, 0))                       # line 001 reaches the new PCPU first
    w.deliver((M.MACHINE, 1))                       # line 000 reaches the old one: forwarded
    w.deliver((1, 0))                               # the move
    w.deliver((1, 0))                               # line 000, forwarded
    w.run_guest(DOMU)
    assert w.got[DOMU] == b"line 000\nline 001\n"


def test_what_waits_for_its_turn_moves_with_the_domain():
    w = World(cpus=3)
    w.type_line(DOMU)                               # 0 -> pcpu 1
    w.move(DOMU, 2)
    w.type_line(DOMU)                               # 1 -> pcpu 2
    w.deliver((M.MACHINE, 2))                       # 1 waits on pcpu 2 for 0
    w.deliver((1, 2))                               # the domain arrives on pcpu 2
    w.move(DOMU, 0)                                 # and leaves at once, taking 1 along
    w.deliver((M.MACHINE, 1))                       # 0 -> forwarded to pcpu 0
    w.deliver((2, 0))                               # the domain with 1
    w.deliver((1, 0))                               # 0: its turn, then 1's
    w.run_guest(DOMU)
    assert w.got[DOMU] == b"line 000\nline 001\n"


ACTIONS = st.lists(st.tuples(st.sampled_from(["type", "deliver", "move", "run"]),
                             st.sampled_from([DOM0, DOMU]), st.integers(0, 50)),
                   max_size=150)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cpus=st.integers(2, 3), actions=ACTIONS)
def test_every_interleaving_keeps_the_typed_order(cpus, actions):
    w = World(cpus)
    for what, domid, n in actions:
        if what == "type":
            w.type_line(domid)
        elif what == "deliver":
            busy = w.net.busy()
            if busy:
                w.deliver(busy[n % len(busy)])
        elif what == "move":
            w.move(domid, n % cpus)
        else:
            w.run_guest(domid)
    w.settle()
    assert w.got == w.typed
    assert w.controller.pending(DOMU) == (0, 0)
    assert not any(p.ctrl_if.early for p in w.pcpus)
