"""Event delivery on one PCPU: setting ports pending in the right PCPU, waking
blocked domains, VIRQs, and the upcall on every return to the guest.

Only the PCPU that owns a domain writes its shared_info, between two slices or
inside the hook while that domain is paused in a hypercall (docs/design.md, "Who
writes what in machine RAM").
So evtchn_set_pending for a domain hosted elsewhere becomes an IPI
[IPI_EVTCHN_SET, src, domid, port, sent_ns] to the domain's PCPU (DomainInfo.processor),
which sets the bits in Xen's order between its slices and wakes the domain. A PCPU
that receives one for a domain it no longer hosts forwards it, so a send never
disappears while a domain moves. Sends to a port whose IPI is still on its way are
coalesced into it (the port's `inflight` flag in the shared event-channel table), so
a domain flooding a remote port costs the remote PCPU one IPI per delivery, not one
per send: the IPIs in flight to a PCPU are bounded by the ports of its domains.

Other hypervisor code (timers, domain ends, hypercalls through HvContext) raises
a VIRQ with EventDelivery.send_virq(domid, virq): the event goes to the port the
domain bound with EVTCHNOP_bind_virq, or to port 0 (VIRQ_MISDIRECT) when it bound
none, and reaches the domain's own PCPU by IPI if it runs elsewhere.

Where a remote event's time goes (the report's pcpus[].event_wake_us), on the host
clock every process shares: `wire` from the send to the receiving PCPU's watcher
thread (sent_ns, and the arrival time the watcher appends to the message),
`handoff` from there to the main thread setting the port, `to_guest` from waking
the blocked domain to entering it."""
from __future__ import annotations

import collections
import time

from smpxen.hv.event_channel import EvtchnTables
from smpxen.ipc import messages as M
from smpxen.sched.core import Action
from smpxen.pcpu.schedule import EXIT_RESCHED
from smpxen.sched.flags import DFM_BLOCKED
from smpxen.xen.trace import (IDLE_DOMAIN_ID, TRC_EVTCHN_SEND, TRC_EVTCHN_SET, TRC_EVTCHN_UPCALL,
                               TRC_SCHED_WAKE)

WAKE_SAMPLES = 100_000        # per step, the latest kept


def event_pending(shared) -> bool:
    """Xen's event_pending(): an upcall is pending and not masked, so the domain has
    an event to take (it must not stay blocked, and returning to it delivers one)."""
    vd = shared.vcpu_data[0]
    return bool(vd.evtchn_upcall_pending and not vd.evtchn_upcall_mask)


def evtchn_set_pending(shared, port: int) -> bool:
    """Xen's evtchn_set_pending (xen/include/xen/event.h), strict order: pending
    bit; then, only if it was clear and the port is unmasked, the selector bit;
    then, only if that was clear, upcall_pending. True when upcall_pending was set
    here (the domain must be woken and, if it runs, kicked)."""
    word, bit = port >> 5, 1 << (port & 31)
    pending = shared.evtchn_pending
    if pending[word] & bit:
        return False
    pending[word] |= bit
    if shared.evtchn_mask[word] & bit:
        return False                # stays pending; the guest looks again when it unmasks
    sel_bit = 1 << word
    if shared.evtchn_pending_sel & sel_bit:
        return False
    shared.evtchn_pending_sel |= sel_bit
    shared.vcpu_data[0].evtchn_upcall_pending = 1
    return True


class EventDelivery:
    def __init__(self, pcpu):
        self.pcpu = pcpu
        self.tables = EvtchnTables(pcpu.ram.mem, pcpu.layout.evtchn_mfn << 12,
                                   pcpu.domains, pcpu.locks.evtchn)
        self.counts = {"events_set": 0, "events_forwarded": 0, "events_coalesced": 0, "upcalls": 0}
        self.wake_steps = {step: collections.deque(maxlen=WAKE_SAMPLES)
                           for step in ("wire", "handoff", "to_guest")}

    # ---- setting events pending ------------------------------------------------
    def set_pending(self, domid: int, port: int, remote: bool = False) -> None:
        """evtchn_set_pending(domid, port) from anywhere on this PCPU (`remote`: for
        an IPI_EVTCHN_SET, whose wake-up is timed)."""
        pcpu = self.pcpu
        v = pcpu.vcpus.get(domid)
        if v is not None:
            self._set_local(v, port, remote)
            return
        info = pcpu.domains.find(domid)
        if info is None:
            return                  # the domain is gone: nothing to notify
        if info.processor == pcpu.index:
            # Ours but not started yet (START not processed): nobody runs it, so
            # write the bits now; the scheduler finds it runnable when it starts.
            from smpxen.xen.structs import SharedInfo
            evtchn_set_pending(SharedInfo.from_buffer(pcpu.ram.mem, info.shared_info_mfn << 12), port)
            return
        self._send_remote(info.processor, domid, port)

    def _send_remote(self, cpu: int, domid: int, port: int) -> None:
        if not self.tables.begin_delivery(domid, port):
            self.counts["events_coalesced"] += 1
            return
        self.counts["events_forwarded"] += 1
        self.pcpu.mailbox.send_ipi(cpu, M.IPI_EVTCHN_SET, domid, port, time.monotonic_ns())

    def _set_local(self, v, port: int, remote: bool = False) -> None:
        self.counts["events_set"] += 1
        raised = evtchn_set_pending(v.shared, port)
        pcpu = self.pcpu
        if pcpu.trace_mask & TRC_EVTCHN_SET:
            pcpu.trace.put(TRC_EVTCHN_SET, v.domid, port, int(raised))
        if not raised:
            return
        sched = pcpu.sched
        if v.ended or sched is None or not sched.has_domain(v.domid):
            return
        if pcpu.trace_mask & TRC_SCHED_WAKE and sched.flags(v.domid) & DFM_BLOCKED:
            pcpu.trace.put(TRC_SCHED_WAKE, v.domid)
        was_blocked = sched.flags(v.domid) & DFM_BLOCKED
        r = sched.unblock(v.domid, pcpu.clock.now())       # domain_unblock: wake if blocked
        if was_blocked and remote:
            v.woken(self.wake_steps["to_guest"], time.monotonic_ns())
        if r.action == Action.NOW and v is not pcpu.current:
            pcpu.exit = EXIT_RESCHED             # inside a hook: stop the slice

    def on_ipi(self, domid: int, port: int, sent_ns: int, arrived_ns: int) -> None:
        """IPI_EVTCHN_SET: set the port if the domain is ours; else pass it on to
        where it went, still in flight (its send time with it)."""
        pcpu = self.pcpu
        info = pcpu.domains.find(domid)
        if domid not in pcpu.vcpus and info is not None and info.processor != pcpu.index:
            pcpu.mailbox.send_ipi(info.processor, M.IPI_EVTCHN_SET, domid, port, sent_ns)
            return
        steps = self.wake_steps
        steps["wire"].append((arrived_ns - sent_ns) / 1000)
        steps["handoff"].append((time.monotonic_ns() - arrived_ns) / 1000)
        self.tables.end_delivery(domid, port)
        self.set_pending(domid, port, remote=True)

    def send(self, domid: int, port: int, sender: int) -> None:
        """A send: by domain `sender` (EVTCHNOP_send) or the hypervisor (a VIRQ)."""
        if self.pcpu.trace_mask & TRC_EVTCHN_SEND:
            self.pcpu.trace.put(TRC_EVTCHN_SEND, domid, port, sender)
        self.set_pending(domid, port)

    def send_virq(self, domid: int, virq: int) -> None:
        self.send(domid, self.tables.virq_port(domid, virq), IDLE_DOMAIN_ID)

    def pending(self, domid: int) -> bool:
        """An unmasked event is pending for our domain `domid`."""
        return event_pending(self.pcpu.vcpus[domid].shared)

    # ---- upcalls ------------------------------------------------------------------
    def deliver_upcall(self, v, context: tuple) -> int | None:
        """Xen's test_all_events on return to the guest: if an unmasked event is
        pending, mask upcalls and bounce to the event callback over `context`
        (eip, cs, eflags, esp, ss). Returns the new resume address or None.
        A domain that registered no event callback keeps its events pending (Xen
        would jump to address 0); it can still poll or block on them."""
        if not event_pending(v.shared):
            return None
        t = v.thread
        if t.event_address == 0:
            return None
        v.shared.vcpu_data[0].evtchn_upcall_mask = 1
        self.counts["upcalls"] += 1
        self.pcpu.trace.trace(TRC_EVTCHN_UPCALL, v.domid, t.event_address)
        return self.pcpu.traps.bounce_to(v, t.event_cs, t.event_address, context)

