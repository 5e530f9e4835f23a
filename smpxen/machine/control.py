"""The machine's side of the control plane: the control endpoint's place in the
machine process (smpxen/control/endpoint.py), the facts verbs may read, and the
records of domains made and unmade while the machine runs.

Records. Domains created at run time (by `xm create`, or by a Domain-0 kernel's own
DOM0_CREATEDOMAIN) are announced by the PCPU that created them (DOMAIN_CREATED);
`xm create` then names them (a "domain_named" event from its worker, before the
domain is unpaused, so its first console line carries the name). A destroyed
domain's record (DOMAIN_DESTROYED, with its counters) moves to the past records:
the report lists every domain that existed, and its id may be handed out again.

The endpoint is opened once every PCPU is online; its address is printed on stderr
and goes in the report (control_endpoint). A machine without Domain-0 opens it too:
every verb that needs Domain-0 answers that there is none."""
from __future__ import annotations

import sys
import threading

import zmq

from smpxen.control import verbs  # noqa: F401  (fills the verb table)
from smpxen.control.endpoint import ControlEndpoint
from smpxen.machine.report import add_domain_stats

DOM0 = 0


class MachineFacts:
    """What verbs may read of the machine, from any thread."""

    def __init__(self, machine):
        self._m = machine
        self.cpus = machine.cfg.cpus
        self._lock = threading.Lock()
        self._names = {d: r.name for d, r in machine.records.items()}
        self._claimed: set[str] = set()    # names of domains xm create is making
        rec = machine.records.get(DOM0)
        self._dom0 = rec is not None and rec.privileged

    def has_dom0(self) -> bool:
        return self._dom0

    def dom0_pcpu(self) -> int | None:
        """Where Domain-0 was put; a PCPU it left passes requests on."""
        rec = self._m.records.get(DOM0)
        return rec.pcpu if self._dom0 and rec is not None else None

    def privcmd_l1(self) -> int | None:
        return self._m.privcmd_l1

    def ram(self):
        """Machine RAM (MachineRAM), to read: the tbufs verb (smpxen/trace/xm_verbs.py)."""
        return self._m.ram

    def hv_state(self) -> dict:
        """A digest of the hypervisor's tables (smpxen/machine/hvstate.py)."""
        from smpxen.machine.hvstate import snapshot
        return snapshot(self._m.ram, self._m.layout)

    def names(self) -> dict[int, str]:
        with self._lock:
            return dict(self._names)

    def claim_name(self, name: str) -> bool:
        """For xm create: True if no domain has `name` and no other create is making
        one with it; the claim holds until release_name (by then the domain made,
        if any, has the name: its worker's event reaches the main thread before the
        worker's later privcmd requests)."""
        with self._lock:
            if name in self._claimed or name in self._names.values():
                return False
            self._claimed.add(name)
            return True

    def release_name(self, name: str) -> None:
        with self._lock:
            self._claimed.discard(name)

    def set_name(self, domid: int, name: str | None) -> None:
        with self._lock:
            if name is None:
                self._names.pop(domid, None)
            else:
                self._names[domid] = name


class ControlPlane:
    """The endpoint and the records, driven by the machine's main thread."""

    def __init__(self, machine):
        from smpxen.machine.machine import DomainRecord
        self.m = machine
        self.DomainRecord = DomainRecord
        self.facts = MachineFacts(machine)
        self.endpoint = ControlEndpoint(machine.zctx, machine.tag, self.facts, self.event,
                                        machine.outboxes)
        self.closed = False
        self.poller = zmq.Poller()
        for sock in (machine.inbox, *self.endpoint.sockets()):
            self.poller.register(sock, zmq.POLLIN)
        sys.stderr.write(f"smpxen: control endpoint {self.endpoint.address} "
                         f"(smpxen xm --machine {machine.tag} VERB)\n")
        sys.stderr.flush()

    def poll(self, timeout_ms: int) -> bool:
        """Serve the endpoint; True if the machine's inbox has a message."""
        if self.closed:
            return bool(self.m.inbox.poll(timeout_ms))
        ready = dict(self.poller.poll(timeout_ms))
        self.endpoint.serve(ready)
        return self.m.inbox in ready

    def close(self) -> None:
        """The endpoint stops (the records stay for the report). Idempotent."""
        if not self.closed:
            self.closed = True
            self.endpoint.close()

    # ---- records ---------------------------------------------------------------------------
    def created(self, pcpu: int, domid: int, processor: int, max_pages: int) -> None:
        """DOMAIN_CREATED: a domain exists that the config did not make."""
        m = self.m
        if domid in m.records:
            self._retire(domid)            # an id handed out again: the old one is history
        name = f"domain{domid}"
        m.records[domid] = self.DomainRecord(domid, name, "", max_pages * 4096, processor, False, "")
        m.console.names[domid] = name
        self.facts.set_name(domid, name)

    def event(self, kind: str, data) -> None:
        """What a verb's worker tells the machine."""
        if kind == "domain_named":
            rec = self.m.records.get(data["domid"])
            if rec is None:
                return
            rec.name, rec.kernel, rec.cmdline = data["name"], data["kernel"], data["cmdline"]
            rec.memory_bytes, rec.bvt = data["memory_bytes"], data["bvt"]
            self.m.console.names[rec.domid] = rec.name
            self.facts.set_name(rec.domid, rec.name)
        elif kind == "ctrl":                       # smpxen/control/ctrl_verbs.py
            self.m.controller.serve(data)

    def destroyed(self, pcpu: int, domid: int, stats: dict) -> None:
        """DOMAIN_DESTROYED: the domain is gone; its record keeps what it did."""
        rec = self.m.records.get(domid)
        if rec is None:
            return
        if rec.ended is None:
            rec.ended = {"how": "destroyed", "code": 0, "detail": "DOM0_DESTROYDOMAIN", "pcpu": pcpu}
            self.m.controller.domain_ended(domid, "was destroyed")
        rec.destroyed = True
        add_domain_stats(rec, stats)
        self._retire(domid)

    def _retire(self, domid: int) -> None:
        m = self.m
        rec = m.records.pop(domid)
        m.console.release(domid)
        m.console.flush()
        rec.console = list(m.console.lines.pop(domid, ()))
        rec.console_dropped = (m.console.lines_dropped.pop(domid, 0), m.console.bytes_dropped.pop(domid, 0))
        m.console.forget(domid)
        m.past_records.append(rec)
        self.facts.set_name(domid, None)
