"""Moving a domain from one PCPU to another (DOM0_PINCPUDOMAIN, or the machine's
migration driver). The source takes the domain off its CPU, detaches it from its
scheduler and ships everything the target needs in one IPI: the saved CPU context
(Unicorn contexts are plain bytes and restore in another process, FPU included),
the scheduler record (BVT state; DF_MIGRATED makes the target reset its avt), the
pending one-shot timer and the per-VCPU state. Guest memory, shared_info and the
event-channel table are in machine RAM already; events sent while the domain is
in flight are forwarded by the PCPU that no longer hosts it (pcpu/events.py). So is
the LDT shadow (the domain's PERDOMAIN L1 and its frame references); only (base,
ents) travel, and the target loads LDTR with its own selector at switch-in.
Control-interface messages in flight are forwarded like events (pcpu/ctrl_if.py);
the controller's ring indices and the number of its next message are in the
domain's DomainInfo; Domain-0's queued console input and the messages that arrived
before their turn travel in the payload."""
from __future__ import annotations

import collections
import pickle

from smpxen.ipc import messages as M
from smpxen.pcpu import schedule
from smpxen.pcpu.bounce import ThreadState
from smpxen.pcpu.vcpu import Vcpu
from smpxen.xen.structs import SharedInfo
from smpxen.xen.trace import TRC_MIGRATE_IN, TRC_MIGRATE_OUT


def migrate_out(pcpu, domid: int, target: int) -> bool:
    """Send `domid` to PCPU `target`. False if this PCPU does not host it (any more)."""
    v = pcpu.vcpus.get(domid)
    if v is None or v.ended or target == pcpu.index:
        return False
    now = pcpu.clock.now()
    pcpu.trace.trace(TRC_MIGRATE_OUT, domid, target)
    pcpu.sched.pause(domid, now)
    if v is pcpu.current:
        schedule.reschedule(pcpu)      # saves its context and runs something else
    record = pcpu.sched.migrate_out(domid)
    record["pausecnt"] -= 1            # the pause above was only for the move
    timers = pcpu.clock.timers
    timer = timers.deadline(("domain", domid))          # in this PCPU's clock
    timers.cancel(("domain", domid))
    payload = {
        "domid": domid,
        "context": pickle.dumps(v.context) if v.context is not None else None,
        "sched": record,
        "timer": timer,
        "thread": v.thread.to_dict(),
        "ldt": [v.ldt_base, v.ldt_ents],
        "initial": v.initial,
        "counts": [v.hypercalls, v.slices, sorted(v.pcpus_ran), v.hypercall_results, v.hypercalls_by_nr],
        "time_view": now + v.time_offset,        # the latest time the domain can have seen
        "time_offset": v.time_offset,
        "ctrl_if": pcpu.ctrl_if.migrate_out(domid),
    }
    del pcpu.vcpus[domid]
    v.info.processor = target
    pcpu.mailbox.send_ipi(target, M.IPI_MIGRATE, payload)
    return True


def migrate_in(pcpu, payload: dict) -> None:
    domid = payload["domid"]
    info = pcpu.domains.find(domid)
    shared = SharedInfo.from_buffer(pcpu.ram.mem, info.shared_info_mfn << 12)
    v = Vcpu(domid, info, shared)
    if payload["context"] is not None:
        v.context = pickle.loads(payload["context"])
    v.thread = ThreadState.from_dict(payload["thread"])
    v.ldt_base, v.ldt_ents = payload["ldt"]
    v.initial = payload["initial"]
    v.hypercalls, v.slices, ran, results, v.hypercalls_by_nr = payload["counts"]
    v.hypercall_results = collections.Counter(results)
    v.pcpus_ran = set(ran)
    pcpu.vcpus[domid] = v
    pcpu.trace.trace(TRC_MIGRATE_IN, domid)
    pcpu.ctrl_if.migrate_in(domid, payload["ctrl_if"])
    now = pcpu.clock.now()
    if pcpu.clock.model == "percpu":
        v.time_offset = max(0, payload["time_view"] - now)
    pcpu.sched.migrate_in(domid, now, payload["sched"])
    # Events set while it was in flight (some reach us before this IPI and are written
    # straight into its shared_info) must wake it: blocked with an event pending it
    # would otherwise sleep for good, since later sends to a pending port wake nobody.
    if pcpu.events.pending(domid):
        pcpu.sched.unblock(domid, now)
    if payload["timer"] is not None:        # re-expressed from the source's clock to ours
        pcpu.clock.timers.set(("domain", domid), payload["timer"] + payload["time_offset"] - v.time_offset)
