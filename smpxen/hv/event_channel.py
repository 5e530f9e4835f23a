"""Event channels (xen/common/event_channel.c, Xen 2.0): the per-domain port tables
and the event_channel_op hypercall.

The tables live in the reserved hypervisor region (layout.evtchn_mfn: one table of
NR_EVENT_CHANNELS entries per domain-table slot) so every PCPU sees the same
bindings; every change is made under Locks.evtchn. Port 0 of every domain is
permanently bound to VIRQ_MISDIRECT: it is never allocated, cannot be closed and
its entry bytes are unused. Xen grows a domain's table from 16 ports by doubling;
that growth is invisible to guests (lowest free port first, -ENOSPC past 1024), so
the table here has its full size from the start.

EvtchnTables is pure table logic (no PCPU, no guest memory): it is what the unit
tests drive. Setting a port pending in the target's shared_info is not done here:
send returns the remote (domain, port) and the caller routes it to the PCPU that
owns that domain (smpxen/pcpu/events.py; docs/design.md, "Who writes what in
machine RAM")."""
from __future__ import annotations

import ctypes
from contextlib import nullcontext

from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.structs import EvtchnOp
from smpxen.xen.xen import (DOMID_SELF, EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain,
                            EVTCHNOP_bind_pirq, EVTCHNOP_bind_virq, EVTCHNOP_close,
                            EVTCHNOP_send, EVTCHNOP_status, EVTCHNSTAT_closed,
                            EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound, EVTCHNSTAT_virq,
                            NR_EVENT_CHANNELS, NR_PIRQS, NR_VIRQS, VIRQ_MISDIRECT)

# Channel states (xen/include/xen/sched.h ECS_*).
ECS_FREE = 0
ECS_UNBOUND = 1
ECS_INTERDOMAIN = 2
ECS_PIRQ = 3
ECS_VIRQ = 4


class EvtchnEntry(ctypes.LittleEndianStructure):
    """One port of a domain's table (hypervisor-private; Xen's event_channel_t)."""
    _pack_ = 1
    _fields_ = [
        ("state", ctypes.c_uint8),          # ECS_*
        ("inflight", ctypes.c_uint8),       # an IPI setting this port is on its way
        ("remote_dom", ctypes.c_uint16),    # unbound: who may bind; interdomain: peer domain
        ("remote_port", ctypes.c_uint16),   # interdomain: peer port
        ("virq", ctypes.c_uint16),          # ECS_VIRQ: the VIRQ (ECS_PIRQ would keep the pirq)
    ]


assert ctypes.sizeof(EvtchnEntry) == 8
DomainPorts = EvtchnEntry * NR_EVENT_CHANNELS


class EvtchnTables:
    """The event-channel tables of every domain.

    buf/offset: where the tables start (slot s at offset + s * sizeof(DomainPorts));
    domains: has find(domid) -> DomainInfo-like (with .privileged and .virq_to_evtchn)
    or None, and slot_of(domid); lock: a context manager (Locks.evtchn)."""

    def __init__(self, buf, offset: int, domains, lock=None):
        self.buf = buf
        self.offset = offset
        self.domains = domains
        self.lock = lock if lock is not None else nullcontext()
        self._ports: dict[int, tuple[object, DomainPorts]] = {}

    # ---- lookup ------------------------------------------------------------------
    def ports(self, domid: int) -> DomainPorts | None:
        info = self.domains.find(domid)
        if info is None:
            return None
        cached = self._ports.get(domid)
        if cached is not None and cached[0] is info:
            return cached[1]
        slot = self.domains.slot_of(domid)
        table = DomainPorts.from_buffer(self.buf, self.offset + slot * ctypes.sizeof(DomainPorts))
        self._ports[domid] = (info, table)
        return table

    def reset_domain(self, domid: int) -> None:
        """Free every port of a (new or destroyed) domain's slot."""
        with self.lock:
            table = self.ports(domid)
            ctypes.memset(ctypes.addressof(table), 0, ctypes.sizeof(table))
            info = self.domains.find(domid)
            for i in range(len(info.virq_to_evtchn)):
                info.virq_to_evtchn[i] = 0

    def destroy_domain(self, domid: int) -> int:
        """destroy_event_channels: close every port of a dying domain (an
        interdomain peer's end becomes unbound, awaiting the dead domain's id, as in
        Xen 2.0) and clear its table. Returns how many ports were open."""
        with self.lock:
            table = self.ports(domid)
            if table is None:
                return 0
            open_ports = [p for p in range(1, NR_EVENT_CHANNELS) if table[p].state != ECS_FREE]
            for port in open_ports:
                self.close(domid, True, domid, port)
            self.reset_domain(domid)
            return len(open_ports)

    @staticmethod
    def _free_port(table: DomainPorts) -> int:
        for port in range(1, NR_EVENT_CHANNELS):     # port 0 is VIRQ_MISDIRECT for ever
            if table[port].state == ECS_FREE:
                return port
        return -errno.ENOSPC

    def _resolve(self, caller: int, dom: int) -> int:
        return caller if dom == DOMID_SELF else dom

    # ---- operations (caller = domain id issuing the hypercall) -------------------
    def alloc_unbound(self, caller: int, privileged: bool, dom: int) -> tuple[int, int]:
        """A new port of the caller awaiting a bind from `dom`. -> (rc, port)"""
        dom = self._resolve(caller, dom)
        with self.lock:
            if self.domains.find(dom) is None:
                return -errno.ESRCH, 0
            table = self.ports(caller)
            port = self._free_port(table)
            if port < 0:
                return port, 0
            e = table[port]
            e.state, e.remote_dom, e.remote_port, e.virq = ECS_UNBOUND, dom, 0, 0
            return 0, port

    def bind_interdomain(self, caller: int, privileged: bool, dom1: int, port1: int,
                         dom2: int, port2: int) -> tuple[int, int, int]:
        """Connect <dom1,port1> and <dom2,port2>; port 0 on either side means "any
        free port". Xen's order of checks. -> (rc, port1, port2)"""
        if not privileged and dom1 != DOMID_SELF:
            return -errno.EPERM, port1, port2
        dom2_is_self = dom2 == DOMID_SELF or dom2 == caller
        dom1 = self._resolve(caller, dom1)
        dom2 = self._resolve(caller, dom2)
        in_port1, in_port2 = port1, port2
        with self.lock:
            t1, t2 = self.ports(dom1), self.ports(dom2)
            if t1 is None or t2 is None:
                return -errno.ESRCH, port1, port2
            if port1 == 0:
                port1 = self._free_port(t1)
                if port1 < 0:
                    return port1, in_port1, in_port2
            elif port1 >= NR_EVENT_CHANNELS:
                return -errno.EINVAL, in_port1, in_port2
            if port2 == 0:
                # Keep port1 from being picked again when dom1 == dom2 (loopback).
                saved = t1[port1].state
                t1[port1].state = ECS_INTERDOMAIN
                port2 = self._free_port(t2)
                t1[port1].state = saved
                if port2 < 0:
                    return port2, in_port1, in_port2
            elif port2 >= NR_EVENT_CHANNELS:
                return -errno.EINVAL, in_port1, in_port2

            e1 = t1[port1]
            if e1.state == ECS_UNBOUND:
                if e1.remote_dom != dom2:
                    return -errno.EINVAL, in_port1, in_port2
            elif e1.state == ECS_INTERDOMAIN:
                if e1.remote_dom != dom2 or (e1.remote_port != port2 and in_port2 != 0):
                    return -errno.EINVAL, in_port1, in_port2
                return 0, port1, e1.remote_port          # already bound: the existing pairing
            elif e1.state != ECS_FREE or port1 == 0:
                return -errno.EINVAL, in_port1, in_port2

            e2 = t2[port2]
            if e2.state == ECS_FREE and port2 != 0:
                # Only a privileged domain may bind a free port of somebody else.
                if not privileged and not dom2_is_self:
                    return -errno.EPERM, in_port1, in_port2
            elif e2.state == ECS_UNBOUND:
                if e2.remote_dom != dom1:
                    return -errno.EINVAL, in_port1, in_port2
            elif e2.state == ECS_INTERDOMAIN:
                if e2.remote_dom != dom1 or (e2.remote_port != port1 and in_port1 != 0):
                    return -errno.EINVAL, in_port1, in_port2
                return 0, e2.remote_port, port2
            else:
                return -errno.EINVAL, in_port1, in_port2

            e1.state, e1.remote_dom, e1.remote_port, e1.virq = ECS_INTERDOMAIN, dom2, port2, 0
            e2.state, e2.remote_dom, e2.remote_port, e2.virq = ECS_INTERDOMAIN, dom1, port1, 0
            return 0, port1, port2

    def bind_virq(self, caller: int, virq: int) -> tuple[int, int]:
        """-> (rc, port); an already-bound VIRQ returns its port."""
        if virq >= NR_VIRQS:
            return -errno.EINVAL, 0
        with self.lock:
            info = self.domains.find(caller)
            if virq == VIRQ_MISDIRECT:
                return 0, 0
            port = info.virq_to_evtchn[virq]
            if port != 0:
                return 0, port
            table = self.ports(caller)
            port = self._free_port(table)
            if port < 0:
                return port, 0
            e = table[port]
            e.state, e.remote_dom, e.remote_port, e.virq = ECS_VIRQ, 0, 0, virq
            info.virq_to_evtchn[virq] = port
            return 0, port

    def bind_pirq(self, caller: int, pirq: int) -> tuple[int, int]:
        """There are no physical IRQs and no domain holds the physdev capability,
        so this fails the way Xen's pirq_guest_bind refuses an unprivileged caller."""
        if pirq >= NR_PIRQS:
            return -errno.EINVAL, 0
        return -errno.EPERM, 0

    def close(self, caller: int, privileged: bool, dom: int, port: int) -> int:
        if dom != DOMID_SELF and dom != caller and not privileged:
            return -errno.EPERM
        dom = self._resolve(caller, dom)
        with self.lock:
            table = self.ports(dom)
            if table is None:
                return -errno.ESRCH
            if port <= 0 or port >= NR_EVENT_CHANNELS:
                return -errno.EINVAL       # port 0 (VIRQ_MISDIRECT) cannot be closed
            e = table[port]
            if e.state == ECS_FREE:
                return -errno.EINVAL
            if e.state == ECS_VIRQ:
                info = self.domains.find(dom)
                if info.virq_to_evtchn[e.virq] == port:
                    info.virq_to_evtchn[e.virq] = 0
            elif e.state == ECS_INTERDOMAIN:
                peer = self.ports(e.remote_dom)
                if peer is not None:
                    r = peer[e.remote_port]
                    if r.state == ECS_INTERDOMAIN and r.remote_dom == dom and r.remote_port == port:
                        r.state, r.remote_dom, r.remote_port = ECS_UNBOUND, dom, 0   # awaits us again
            e.state, e.remote_dom, e.remote_port, e.virq = ECS_FREE, 0, 0, 0
            return 0

    # ---- cross-PCPU delivery (smpxen.pcpu.events) --------------------------------
    def begin_delivery(self, domid: int, port: int) -> bool:
        """A PCPU is about to send an IPI setting `port` of `domid` pending: False if
        one is already on its way (the new send is coalesced into it: its effect
        comes after this send, as Xen's test_and_set_bit on a pending port)."""
        with self.lock:
            table = self.ports(domid)
            if table is None or not 0 <= port < NR_EVENT_CHANNELS:
                return False
            if table[port].inflight:
                return False
            table[port].inflight = 1
            return True

    def end_delivery(self, domid: int, port: int) -> None:
        """The domain's PCPU took the IPI: later sends need one of their own. Called
        before it sets the port pending, so no send can be coalesced into one that
        has already taken effect."""
        with self.lock:
            table = self.ports(domid)
            if table is not None and 0 <= port < NR_EVENT_CHANNELS:
                table[port].inflight = 0

    def send(self, caller: int, port: int) -> tuple[int, int, int]:
        """-> (rc, remote domain, remote port): the caller sets that port pending."""
        with self.lock:
            table = self.ports(caller)
            if port <= 0 or port >= NR_EVENT_CHANNELS or table[port].state != ECS_INTERDOMAIN:
                return -errno.EINVAL, 0, 0
            e = table[port]
            return 0, e.remote_dom, e.remote_port

    def status(self, caller: int, privileged: bool, dom: int, port: int) -> tuple[int, int, int, int]:
        """-> (rc, status, a, b): unbound (remote dom, 0), interdomain (dom, port),
        virq (virq, 0)."""
        if dom != DOMID_SELF and dom != caller and not privileged:
            return -errno.EPERM, 0, 0, 0
        dom = self._resolve(caller, dom)
        with self.lock:
            table = self.ports(dom)
            if table is None:
                return -errno.ESRCH, 0, 0, 0
            if port < 0 or port >= NR_EVENT_CHANNELS:
                return -errno.EINVAL, 0, 0, 0
            if port == 0:
                return 0, EVTCHNSTAT_virq, VIRQ_MISDIRECT, 0
            e = table[port]
            if e.state == ECS_FREE:
                return 0, EVTCHNSTAT_closed, 0, 0
            if e.state == ECS_UNBOUND:
                return 0, EVTCHNSTAT_unbound, e.remote_dom, 0
            if e.state == ECS_INTERDOMAIN:
                return 0, EVTCHNSTAT_interdomain, e.remote_dom, e.remote_port
            return 0, EVTCHNSTAT_virq, e.virq, 0

    def virq_port(self, domid: int, virq: int) -> int:
        """Where a VIRQ goes: its bound port, else port 0 (VIRQ_MISDIRECT)."""
        info = self.domains.find(domid)
        return 0 if info is None or virq >= NR_VIRQS else info.virq_to_evtchn[virq]


def _to_controller(v, port: int, rdom: int, rport: int) -> bool:
    """A send on the domain's domain_controller_evtchn, still bound to the
    controller's end in Domain-0 (smpxen/domain/ctrl_channel.py): the controller
    serves the domain's rings (smpxen/pcpu/ctrl_if.py), Domain-0's kernel sees nothing."""
    ctrl = v.info.ctrl
    return ctrl.port != 0 and port == ctrl.port and rdom == 0 and rport == ctrl.remote_port and v.domid != 0


def do_event_channel_op(hv: Hypervisor, uop, *_):
    op = EvtchnOp.from_buffer_copy(hv.mem.read(uop, ctypes.sizeof(EvtchnOp)))
    v = hv.current
    me, priv = v.domid, v.privileged
    tables = hv.evtchn
    u = op.u
    if op.cmd == EVTCHNOP_alloc_unbound:
        rc, u.alloc_unbound.port = tables.alloc_unbound(me, priv, u.alloc_unbound.dom)
    elif op.cmd == EVTCHNOP_bind_interdomain:
        b = u.bind_interdomain
        rc, b.port1, b.port2 = tables.bind_interdomain(me, priv, b.dom1, b.port1, b.dom2, b.port2)
    elif op.cmd == EVTCHNOP_bind_virq:
        rc, u.bind_virq.port = tables.bind_virq(me, u.bind_virq.virq)
    elif op.cmd == EVTCHNOP_bind_pirq:
        rc, u.bind_pirq.port = tables.bind_pirq(me, u.bind_pirq.pirq)
    elif op.cmd == EVTCHNOP_close:
        return tables.close(me, priv, u.close.dom, u.close.port)
    elif op.cmd == EVTCHNOP_send:
        rc, rdom, rport = tables.send(me, u.send.local_port)
        if rc == 0:
            if _to_controller(v, u.send.local_port, rdom, rport):
                hv.ctrl_if_notify()
            else:
                hv.evtchn_set_pending(rdom, rport)
        return rc
    elif op.cmd == EVTCHNOP_status:
        s = u.status
        rc, s.status, a, b = tables.status(me, priv, s.dom, s.port)
        if s.status == EVTCHNSTAT_unbound:
            s.u.unbound_dom = a
        elif s.status == EVTCHNSTAT_interdomain:
            s.u.interdomain.dom, s.u.interdomain.port = a, b
        elif s.status == EVTCHNSTAT_virq:
            s.u.virq = a
    else:
        return -errno.ENOSYS
    if rc == 0:
        hv.mem.write(uop, bytes(op))    # Xen copies the whole op back on success
    return rc
