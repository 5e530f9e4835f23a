"""`smpxen trace-export --chrome`: a trace as the Trace Event Format JSON that
Perfetto (ui.perfetto.dev) and chrome://tracing open.

One track per PCPU (pid 0, tid = PCPU), all on the common time axis
(smpxen/trace/timeline.py, in microseconds): each domain's stints on a PCPU as
slices (from TRC_SCHED_SWITCH to the next), its hypercalls as slices inside them,
every IPI as a flow arrow from the send on one PCPU to the receive on another
(each end a short slice the arrow binds to), every event-channel send as a flow to
the setting of its port (through the IPI that carried it when the domain lives on
another PCPU), and the other records as instant events. Records without a place
on the axis (before a PCPU's time was up) are left out and counted."""
from __future__ import annotations

import json

from smpxen.trace.formats import event_name, record_kind
from smpxen.trace.kinds import EVTCHN_SET_CODE, ipi_name
from smpxen.trace.timeline import IpiPairs, TimeAxis, inversions
from smpxen.xen.trace import (IDLE_DOMAIN_ID, TRC_EVTCHN_SEND, TRC_EVTCHN_SET, TRC_HCALL_ENTRY,
                              TRC_HCALL_EXIT, TRC_IPI_RECV, TRC_IPI_SEND, TRC_SCHED_SWITCH)

PID = 0
END_US = 0.5          # how long the slice an arrow binds to lasts (less if the next record is sooner)


def _us(ns: int) -> float:
    return ns / 1000.0


class ChromeExport:
    def __init__(self):
        self.events: list[dict] = []
        self.axis = TimeAxis()
        self.ipis = IpiPairs()
        self.records: list = []          # (rec, t) of placed records, in file order
        self.unplaced = 0
        self.cpus: set[int] = set()

    def feed(self, rec) -> None:
        t = self.axis.place(rec)
        self.cpus.add(rec.cpu)
        self.ipis.feed(rec, t, len(self.records) if t is not None else -1)
        if t is None:
            self.unplaced += 1
            return
        self.records.append((rec, t))

    # ---- building ------------------------------------------------------------------
    def _slice(self, name, cat, cpu, t0, t1, args=None) -> None:
        self.events.append({"name": name, "cat": cat, "ph": "X", "pid": PID, "tid": cpu,
                            "ts": _us(t0), "dur": max(0.0, _us(t1) - _us(t0)), "args": args or {}})

    def _flow(self, name, cat, fid, src, dst) -> None:
        """An arrow from record index src to record index dst (each gets a short slice)."""
        for phase, index in (("s", src), ("f", dst)):
            rec, t = self.records[index]
            ev = {"name": name, "cat": cat, "ph": phase, "id": fid, "pid": PID, "tid": rec.cpu,
                  "ts": _us(t)}
            if phase == "f":
                ev["bp"] = "e"
            self.events.append(ev)
            self.anchored.add(index)

    def build(self) -> dict:
        self.anchored: set[int] = set()
        for cpu in sorted(self.cpus):
            self.events.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": cpu,
                                "args": {"name": f"PCPU {cpu}"}})
        self.events.append({"name": "process_name", "ph": "M", "pid": PID, "args": {"name": "smpxen"}})
        fid = 0
        for ts, tr, src, dst, code, si, ri in self.ipis.pairs:
            if si >= 0 and ri >= 0:
                fid += 1
                self._flow(ipi_name(code), "ipi", fid, si, ri)
        for send, setting in self._event_links():
            fid += 1
            self._flow("evtchn", "evtchn", fid, send, setting)
        self._tracks()
        return {"traceEvents": self.events, "displayTimeUnit": "ns",
                "otherData": {"smpxen": {"records_placed": len(self.records), "records_unplaced": self.unplaced,
                                         "inversions": inversions(self.ipis.pairs)}}}

    def _event_links(self):
        """(send index, set index): a send sets its port on the same PCPU at once,
        or through an IPI_EVTCHN_SET whose receive sets it on the other. Two passes:
        each PCPU's records keep their order in the file, but PCPUs come in chunks,
        so a receive may come before the send it carries."""
        by_send_ipi = {si: ri for *_x, code, si, ri in self.ipis.pairs if code == EVTCHN_SET_CODE}
        carried: dict = {}          # IPI receive index -> the send it carries
        last_send: dict = {}        # (cpu, domid, port) -> send index waiting for its IPI or set
        local: set = set()          # set indices linked to a send on their own PCPU
        for i, (rec, _t) in enumerate(self.records):
            ev = rec.event
            if ev == TRC_EVTCHN_SEND:
                last_send[rec.cpu, rec.d[0], rec.d[1]] = i
            elif ev == TRC_IPI_SEND and rec.d[1] == EVTCHN_SET_CODE:
                send = last_send.pop((rec.cpu, rec.d[3], rec.d[4]), None)
                if send is not None and i in by_send_ipi:
                    carried[by_send_ipi[i]] = send
            elif ev == TRC_EVTCHN_SET:
                send = last_send.pop((rec.cpu, rec.d[0], rec.d[1]), None)
                if send is not None:
                    local.add(i)
                    yield send, i
        arrived: dict = {}          # (cpu, domid, port) -> send index whose IPI arrived here
        for i, (rec, _t) in enumerate(self.records):
            ev = rec.event
            if ev == TRC_IPI_RECV and rec.d[1] == EVTCHN_SET_CODE:
                send = carried.pop(i, None)
                if send is not None:
                    arrived[rec.cpu, rec.d[3], rec.d[4]] = send
            elif ev == TRC_EVTCHN_SET and i not in local:
                send = arrived.pop((rec.cpu, rec.d[0], rec.d[1]), None)
                if send is not None:
                    yield send, i

    def _tracks(self) -> None:
        per_cpu: dict[int, list] = {}
        for i, (rec, t) in enumerate(self.records):
            per_cpu.setdefault(rec.cpu, []).append((t, i, rec))
        for cpu, items in per_cpu.items():
            items.sort(key=lambda x: (x[0], x[1]))
            running = None          # (domid, since)
            calls: dict = {}        # (domid, nr) -> entry time
            for k, (t, i, rec) in enumerate(items):
                ev = rec.event
                if ev == TRC_SCHED_SWITCH:
                    if running is not None:
                        self._slice(f"d{running[0]}", "domain", cpu, running[1], t, {"domid": running[0]})
                    running = None if rec.d[2] == IDLE_DOMAIN_ID else (rec.d[2], t)
                elif ev == TRC_HCALL_ENTRY:
                    calls[rec.d[0], rec.d[1]] = t
                elif ev == TRC_HCALL_EXIT:
                    t0 = calls.pop((rec.d[0], rec.d[1]), None)
                    if t0 is not None:
                        self._slice(record_kind(rec), "hypercall", cpu, t0, t,
                                    {"domid": rec.d[0], "result": rec.d[2]})
                elif i in self.anchored:
                    nxt = items[k + 1][0] if k + 1 < len(items) else t + 1000
                    self._slice(f"{event_name(ev)} {record_kind(rec)}".strip(), "ipi" if ev in
                                (TRC_IPI_SEND, TRC_IPI_RECV) else "evtchn", cpu, t,
                                min(t + END_US * 1000, max(t, nxt)), {"d": list(rec.d)})
                else:
                    self.events.append({"name": event_name(ev), "cat": "record", "ph": "i", "s": "t",
                                        "pid": PID, "tid": cpu, "ts": _us(t), "args": {"d": list(rec.d)}})
            if running is not None and items:
                self._slice(f"d{running[0]}", "domain", cpu, running[1], items[-1][0], {"domid": running[0]})


def export_chrome(records, out_path: str) -> dict:
    """Write `records` as a Chrome trace to out_path; returns its summary."""
    ex = ChromeExport()
    for rec in records:
        ex.feed(rec)
    doc = ex.build()
    with open(out_path, "w") as f:
        json.dump(doc, f)
    return doc["otherData"]["smpxen"]
