"""xentrace_format: print trace records through a formats file in Xen's syntax.

A formats file has one rule per line, `{event id}{whitespace}{format}`, where the
id is a number (0x00020001 or decimal) and the format a Python %-format over the
record: %(cpu)d, %(tsc)d, %(event)d and %(1)d .. %(5)d are Xen's (x and o print
hex and octal); smpxen adds %(reltsc)d (cycles since the previous record of the
same PCPU, as later Xen's formats use), %(time)d (ns on the common time axis,
smpxen/trace/timeline.py; -1 when the record has no place), %(name)s (the event's
name), %(kind)s (the IPI kind or the hypercall a record is about) and %(12)d,
%(34)d (d1:d2 and d3:d4 as one signed 64-bit number, low word first). Lines that
start with '#' and empty lines are skipped. As in Xen's xentrace_format, a record
whose id has no rule uses the rule for id 0 if there is one, else is not printed.
`-c MHZ` (Xen's option) turns %(tsc) into seconds at that counter frequency.

smpxen/trace/formats (shipped) has a rule for every id smpxen writes."""
from __future__ import annotations

import re
from importlib import resources

from smpxen.trace.kinds import ipi_name
from smpxen.trace.timeline import TimeAxis, _s64
from smpxen.xen import dom0_ops
from smpxen.xen.hypercall import name as hypercall_name
from smpxen.xen.trace import (NAMES, TRC_DOM0OP, TRC_DOM0OP_LEAVE_BASE, TRC_HCALL, TRC_IPI,
                              event_class)

_RULE = re.compile(r"(\S+)\s+(\S.*)")
_DOM0_NAMES = {v: k[5:].lower() for k, v in vars(dom0_ops).items() if k.startswith("DOM0_")
               and k != "DOM0_INTERFACE_VERSION" and isinstance(v, int)}
_SAMPLE = {"cpu": 0, "tsc": 0, "event": 0, "reltsc": 0, "time": 0, "name": "", "kind": "",
           "1": 0, "2": 0, "3": 0, "4": 0, "5": 0, "12": 0, "34": 0}


class FormatsError(ValueError):
    pass


def shipped_formats() -> str:
    return str(resources.files("smpxen.trace") / "formats")


def read_formats(path: str) -> dict[int, str]:
    """id -> format. FormatsError (one line, with the line number) on a bad rule."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise FormatsError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise FormatsError(f"{path}: not a text file") from None
    rules = {}
    for no, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _RULE.match(line.strip())
        if not m:
            raise FormatsError(f"{path} line {no}: expected an event id and a format")
        try:
            event = int(m.group(1), 0)
        except ValueError:
            raise FormatsError(f"{path} line {no}: {m.group(1)!r} is not an event id") from None
        fmt = m.group(2)
        try:
            fmt % _SAMPLE
        except (KeyError, ValueError, TypeError) as e:
            raise FormatsError(f"{path} line {no}: bad format ({type(e).__name__}: {e})") from None
        rules[event] = fmt
    return rules


def event_name(event: int) -> str:
    if event_class(event) == TRC_DOM0OP:
        leave = event >= TRC_DOM0OP_LEAVE_BASE
        cmd = event - (TRC_DOM0OP_LEAVE_BASE if leave else TRC_DOM0OP)
        return f"dom0_op_{'leave' if leave else 'enter'}_{_DOM0_NAMES.get(cmd, cmd)}"
    return NAMES[event][4:].lower() if event in NAMES else f"{event:#010x}"


def record_kind(rec) -> str:
    cls = event_class(rec.event)
    if cls == TRC_IPI:
        return ipi_name(rec.d[1])
    if cls == TRC_HCALL:
        return hypercall_name(rec.d[1] & 31)
    return ""


class Formatter:
    def __init__(self, rules: dict[int, str], mhz: float | None = None):
        self.rules = rules
        self.mhz = mhz
        self.axis = TimeAxis()
        self.last: dict[int, int] = {}

    def format(self, rec) -> str | None:
        t = self.axis.place(rec)
        prev = self.last.get(rec.cpu, rec.cycles)
        self.last[rec.cpu] = rec.cycles
        fmt = self.rules.get(rec.event, self.rules.get(0))
        if fmt is None:
            return None
        tsc = rec.cycles / (self.mhz * 1e6) if self.mhz else rec.cycles
        args = {"cpu": rec.cpu, "tsc": tsc, "event": rec.event, "reltsc": rec.cycles - prev,
                "time": -1 if t is None else t, "name": event_name(rec.event), "kind": record_kind(rec)}
        for i, v in enumerate(rec.d, 1):
            args[str(i)] = v
        args["12"] = _s64(rec.d[0] | rec.d[1] << 32)
        args["34"] = _s64(rec.d[2] | rec.d[3] << 32)
        return fmt % args
