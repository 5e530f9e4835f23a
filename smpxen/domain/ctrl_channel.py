"""Connecting a domain to the domain controller, as xend does when it creates a
domain in Xen 2.0: an interdomain event channel between Domain-0 (the controller's
end, which Domain-0's user space holds through /dev/xen/evtchn) and the new domain,
whose port the builder hands the guest in start_info.domain_controller_evtchn. In
smpxen the machine process plays Domain-0's user space; the PCPU hosting the domain
serves the rings for it (smpxen/pcpu/ctrl_if.py), so Domain-0's kernel never sees
events on the controller's end.

At start of day the machine builds the domains and binds these channels itself
(connect_all), taking both ports from the top of their tables. xend took whatever
port was free (port 1 of a new domain); the guest reads the number from start_info
either way, and taking them from the top leaves the ports a kernel allocates itself
numbered as they would be with no controller. A domain built at run time by
Domain-0's tools (smpxen/control/build.py) is bound as xend did it, with Domain-0's
hypercall, to the new domain's top port; then the controller attaches. When a domain
is destroyed the controller's end is closed with it (disconnect). Without a Domain-0
there is no controller, and start_info.domain_controller_evtchn stays 0."""
from __future__ import annotations

import struct

from smpxen.domain.ctrl_ring import ControllerPort, control_if_of
from smpxen.hv.event_channel import ECS_FREE, EvtchnTables
from smpxen.hv.guestmem import GuestMemory
from smpxen.xen.structs import StartInfo
from smpxen.xen.xen import EVTCHNSTAT_interdomain, NR_EVENT_CHANNELS

CONTROLLER_DOMAIN = 0


class ControlChannelError(Exception):
    pass


def _highest_free(table) -> int:
    for port in range(NR_EVENT_CHANNELS - 1, 0, -1):
        if table[port].state == ECS_FREE:
            return port
    raise ControlChannelError("no free event-channel port")


def connect(ram, nr_frames: int, tables: EvtchnTables, domid: int) -> int:
    """Bind domain `domid` to the controller, connect the controller's end of its
    rings and tell the guest its port (start_info). Returns the guest's port, or 0
    when there is no Domain-0. Call before the domain first runs."""
    info = tables.domains.find(domid)
    if info is None or domid == CONTROLLER_DOMAIN:
        raise ControlChannelError(f"no domain {domid} to connect")
    if tables.domains.find(CONTROLLER_DOMAIN) is None:
        return 0
    with tables.lock:
        port = _highest_free(tables.ports(domid))
        remote = _highest_free(tables.ports(CONTROLLER_DOMAIN))
        rc, remote, port = tables.bind_interdomain(CONTROLLER_DOMAIN, True, CONTROLLER_DOMAIN, remote,
                                                   domid, port)
    if rc != 0:
        raise ControlChannelError(f"binding domain {domid}'s control channel: error {rc}")
    attach(ram, info, port, remote)
    mem = GuestMemory(ram, nr_frames)
    mem.cr3 = info.pt_base_mfn << 12
    mem.write(info.start_info_va + StartInfo.domain_controller_evtchn.offset, struct.pack("<H", port))
    return port


def attach(ram, info, port: int, remote: int, first_seq: int = 0) -> None:
    """The controller takes its end of a domain's rings, bound on `port` (the
    domain's) and `remote` (Domain-0's): it syncs with the shared indices, as xend's
    xu_port connects. first_seq: the number of the controller's first message to it
    (smpxen/pcpu/ctrl_if.py). Before the domain first runs."""
    info.ctrl.port, info.ctrl.remote_port = port, remote
    info.ctrl.in_seq = first_seq
    ControllerPort(control_if_of(ram.mem, info.shared_info_mfn << 12), info.ctrl).connect()


def connect_all(ram, layout, locks, domtable, domids) -> None:
    """At start of day: connect every domain but Domain-0 (the machine's build)."""
    tables = EvtchnTables(ram.mem, layout.evtchn_mfn << 12, domtable, locks.evtchn)
    for domid in domids:
        if domid != CONTROLLER_DOMAIN:
            connect(ram, layout.nr_frames, tables, domid)


def disconnect(tables: EvtchnTables, domid: int) -> None:
    """The controller lets go of a domain that is being destroyed: it closes its end
    (the domain's own ports go with the domain)."""
    info = tables.domains.find(domid)
    if info is None or not info.ctrl.port:
        return
    rc, status, dom, port = tables.status(CONTROLLER_DOMAIN, True, CONTROLLER_DOMAIN, info.ctrl.remote_port)
    if rc == 0 and status == EVTCHNSTAT_interdomain and (dom, port) == (domid, info.ctrl.port):
        tables.close(CONTROLLER_DOMAIN, True, CONTROLLER_DOMAIN, info.ctrl.remote_port)
    info.ctrl.port = info.ctrl.remote_port = 0
