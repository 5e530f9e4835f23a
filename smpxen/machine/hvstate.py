"""A digest of the hypervisor's tables, read by the machine process from machine
RAM (it maps RAM; it built the domains): what `smpxen xm audit` returns, so tests
can check that creating and destroying domains leaves the machine exactly as it was.

What is compared is state, not history: per frame its owner, counts, type and
flags and its machine->phys entry (not the TLB-flush stamps, nor the free list's
order: the same frames are free, handed out in another order); the free pool's
size and members; per domain-table slot its identity and memory (not its CPU time
or scheduler flags, which change while Domain-0 runs), and a free slot's bytes,
which must be all zero; every event-channel table's bytes but the in-flight flags.
Plus the memory audit (smpxen/mm/audit.py) of every live domain, which must find
nothing. Read under the frame-table, domain and event-channel locks; one audit at a
time (record locks belong to the process)."""
from __future__ import annotations

import ctypes
import hashlib
import threading

from smpxen.hv.event_channel import EvtchnEntry
from smpxen.mm.memory import MM
from smpxen.shm.domains import DS_FREE, DomainInfo, DomainTable
from smpxen.shm.frametable import OWNER_NONE, FrameTable
from smpxen.shm.layout import MAX_DOMAINS, NR_EVENT_CHANNELS
from smpxen.shm.locks import Locks

_audit_lock = threading.Lock()
IDENTITY = ("state", "privileged", "domid", "processor", "tot_pages", "max_pages", "shared_info_mfn",
            "pt_base_mfn", "perdomain_pt_mfn", "name")


def snapshot(ram, layout) -> dict:
    with _audit_lock:
        locks = Locks(ram.fd)
        ft = FrameTable(ram, layout, locks)
        dt = DomainTable(ram, layout)
        with locks.mm, locks.domains, locks.evtchn:
            return _snapshot(ram, layout, ft, dt)


def _snapshot(ram, layout, ft, dt) -> dict:
    frames = hashlib.sha256()
    free = []
    import os
    detail = {} if os.environ.get("SMPXEN_AUDIT_DETAIL") else None
    for mfn in range(layout.nr_frames):
        f = ft.frames[mfn]
        frames.update(b"%d %d %d %d %d %d;" % (mfn, f.owner, f.count_info, f.type_info, f.flags, ft.m2p[mfn]))
        if detail is not None:
            detail[mfn] = (f.owner, f.count_info, f.type_info, f.flags, ft.m2p[mfn])
        if f.owner == OWNER_NONE:
            free.append(mfn)
    slots = hashlib.sha256()
    live = []
    zero = bytes(ctypes.sizeof(DomainInfo))
    for i, d in enumerate(dt.slots):
        if d.state == DS_FREE:
            slots.update(b"free %d %d;" % (i, bytes(d) == zero))
        else:
            live.append(d.domid)
            slots.update(repr((i, [getattr(d, k) for k in IDENTITY])).encode())
    events = hashlib.sha256()
    table_bytes = NR_EVENT_CHANNELS * ctypes.sizeof(EvtchnEntry)
    base = layout.evtchn_mfn << 12
    for slot in range(MAX_DOMAINS):
        table = bytearray(ram.mem[base + slot * table_bytes:base + (slot + 1) * table_bytes])
        table[1::ctypes.sizeof(EvtchnEntry)] = bytes(NR_EVENT_CHANNELS)      # in-flight flags
        events.update(table)
    mm = MM(ft, ram, dt)
    problems = {str(d): p for d in live if (p := mm.audit(d, baseptrs=_baseptrs(dt, d)))}
    return {"free_pages": ft.header.free_count, "free_frames": hashlib.sha256(repr(free).encode()).hexdigest(),
            "frame_table": frames.hexdigest(), "domain_table": slots.hexdigest(),
            "event_channels": events.hexdigest(), "domains": sorted(live), "audit_problems": problems,
            **({"detail": detail} if detail is not None else {})}


def _baseptrs(dt, domid: int) -> list[int]:
    info = dt.find(domid)
    return [info.pt_base_mfn] if info is not None and info.pt_base_mfn else []
