"""Marking events pending in a domain's shared_info (Xen's evtchn_set_pending) and
raising virtual interrupts. Runs only on the PCPU that owns the domain (DESIGN.md
invariant 1): shared_info is guest-visible memory."""
from __future__ import annotations


def evtchn_set_pending(shared, port: int) -> bool:
    """Xen's order (xen/include/xen/event.h): set the port's pending bit; if it was
    clear and the port is unmasked and its selector bit was clear, set the selector
    bit and upcall_pending. Returns True when the domain must be woken/kicked."""
    word, bit = port >> 5, 1 << (port & 31)
    pending = shared.evtchn_pending
    if pending[word] & bit:
        return False
    pending[word] |= bit
    if shared.evtchn_mask[word] & bit:
        return False          # stays pending; the guest re-checks when it unmasks
    if shared.evtchn_pending_sel & (1 << word):
        return False
    shared.evtchn_pending_sel |= 1 << word
    shared.vcpu_data[0].evtchn_upcall_pending = 1
    return True


def virq_port(pcpu, vcpu, virq: int) -> int:
    """The port a VIRQ is bound to; unbound VIRQs go to port 0 (VIRQ_MISDIRECT), as
    Xen's per-domain virq_to_evtchn[] defaults to 0."""
    table = getattr(vcpu, "virq_to_evtchn", None)
    return table[virq] if table else 0


def send_virq_local(pcpu, vcpu, virq: int) -> None:
    if evtchn_set_pending(vcpu.shared, virq_port(pcpu, vcpu, virq)):
        pcpu.sched.unblock(vcpu.domid, pcpu.now())
