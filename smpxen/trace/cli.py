"""The trace commands: `smpxen xentrace`, `xentrace-format`, `xentrace-cpusplit`,
`trace-export` and `trace-skew`, and what `smpxen up --trace/--trace-mask` adds to
the config. Every problem is one line on stderr: exit status 2 for bad input (a
file, a formats file, an option), 1 when there is nothing to attach to."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import click

from smpxen.config.schema import TRACE_PAGES_FOR_TRACE


def _fail(what: str, message: str, status: int = 2):
    click.echo(f"smpxen {what}: {message}", err=True)
    sys.exit(status)


def trace_options(sets, trace_path, trace_mask) -> tuple[tuple, tuple]:
    """`smpxen up`: (--set items with the mask, the extra item --trace needs when
    the config has no buffers). A bad mask is one line and exit status 2."""
    from smpxen.trace.mask import MaskError, parse_mask
    sets = tuple(sets)
    if trace_mask is not None:
        try:
            sets += (f"machine.trace_mask={parse_mask(trace_mask)}",)
        except MaskError as e:
            click.echo(f"smpxen: --trace-mask {trace_mask!r}: {e}", err=True)
            sys.exit(2)
    if trace_path is not None and os.path.isdir(trace_path):
        click.echo(f"smpxen: --trace {trace_path}: is a directory", err=True)
        sys.exit(2)
    return sets, ((f"machine.trace_pages={TRACE_PAGES_FOR_TRACE}",) if trace_path else ())


def _records(path: str | None, what: str):
    """Records of a trace file (or stdin), or a one-line error."""
    from smpxen.trace.records import TraceFileError, iter_records, read_records
    try:
        if path is None or path == "-":
            return list(iter_records(sys.stdin.buffer, "stdin"))
        return read_records(path)
    except TraceFileError as e:
        _fail(what, str(e))


@click.command()
@click.argument("out", required=False)
@click.option("--machine", default=None, metavar="TAG|PID",
              help="The machine (the tag smpxen up printed, or its process id); needed when "
                   "several run, as for smpxen xm.")
@click.option("-s", "--poll-sleep", "poll_ms", type=click.IntRange(1, 10_000), default=100,
              show_default=True, help="Milliseconds between looks at the buffers (Xen's -s); "
                                      "sooner while they fill fast.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: when the machine ends, or on "
                   "SIGINT/SIGTERM/SIGHUP).")
def xentrace(out, machine, poll_ms, duration):
    """Read a running machine's trace buffers into OUT (default: stdout, which must
    not be a terminal), in Xen's binary record format, until the machine ends,
    --duration passes, or SIGINT/SIGTERM/SIGHUP; then one line on stderr says how
    many records were read and how many full buffers dropped.

    \b
    As Xen's xentrace does from Domain-0: DOM0_GETTBUFS (asked through the machine's
    control endpoint, as Domain-0) says where the per-PCPU buffers are in machine
    RAM, and the reader takes what they hold every -s ms (sooner while they fill
    fast: a full buffer drops records) without stopping any PCPU.
    The machine needs buffers (machine.trace_pages > 0, e.g. smpxen up --set
    machine.trace_pages=256 [--trace-mask MASK]); only one reader at a time, and
    smpxen up --trace is one. Exit status 1 when there is no machine to read, 2
    for bad options.

    \b
    Example:
      smpxen up --config m.toml --set machine.trace_pages=256 &
      smpxen xentrace run.bin --duration 5
      smpxen xentrace-format --trace run.bin | less"""
    from smpxen.trace.area import BufferReader, TraceAreaError
    from smpxen.trace.attach import AttachError, find, open_ram
    if out is not None and os.path.isdir(out):
        _fail("xentrace", f"{out}: is a directory")
    if out is None and sys.stdout.isatty():
        _fail("xentrace", "will not write binary records to a terminal: give OUT or redirect")
    try:
        m = find(machine)
        fd, mem = open_ram(m)
    except AttachError as e:
        _fail("xentrace", str(e), 1)
    reader = None
    try:
        try:
            reader = BufferReader(mem, fd, (m.mach_addr, m.size))
        except TraceAreaError as e:
            _fail("xentrace", f"machine {m.pid}: {e}", 1)
        try:
            sink = sys.stdout.buffer if out is None else open(out, "wb")
        except OSError as e:
            _fail("xentrace", f"{out}: {e.strerror or e}")
        stop = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.append(1))
        closed = _read_until(reader, sink, m.pid, stop, duration, poll_ms / 1000)
        if out is not None:
            sink.close()
        s = reader.summary()
        before = sum(reader.lost_before)
        click.echo(f"smpxen xentrace: machine {m.pid}: {s['records']} records, "
                   f"{s['lost']} lost to full buffers while reading "
                   f"({', '.join(str(p['lost']) for p in s['per_pcpu'])} by PCPU"
                   f"{f'; {before} before' if before else ''}); "
                   f"buffers found through {m.via}{'; output closed' if closed else ''}", err=True)
    finally:
        if reader is not None:
            reader.release()
        del reader
        os.close(fd)


def _read_until(reader, sink, pid: int, stop: list, duration, longest_s: float) -> bool:
    """Drain the buffers into sink until the machine ends, `duration` passes or a
    signal comes, looking every `longest_s` and sooner when they fill fast
    (smpxen/trace/collect.py). True if sink was closed by its reader (`| head`)."""
    from smpxen.trace.attach import alive
    from smpxen.trace.collect import next_poll_s
    end = None if duration is None else time.monotonic() + duration
    last = time.monotonic()
    try:
        while not stop and alive(pid) and (end is None or time.monotonic() < end):
            now = time.monotonic()
            fill = reader.fullest()
            reader.drain(sink)
            wait = next_poll_s(fill, now - last, longest_s)
            last = now
            time.sleep(wait if end is None else max(0.0, min(wait, end - time.monotonic())))
        reader.drain(sink)
        sink.flush()
    except BrokenPipeError:
        # Nothing more can be written; keep the interpreter's last flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sink.fileno())
        return True
    return False


@click.command("xentrace-format")
@click.argument("formats", required=False)
@click.option("--trace", "trace_path", default=None, metavar="FILE",
              help="The trace file (default: stdin, as Xen's xentrace_format).")
@click.option("-c", "mhz", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Counter frequency in MHz: %(tsc) becomes seconds (Xen's -c).")
def xentrace_format(formats, trace_path, mhz):
    """Print trace records through FORMATS, a formats file in Xen's syntax (one
    rule a line: an event id, then a Python %-format; default: the one smpxen
    ships as smpxen/trace/formats, with a rule for every id smpxen writes).

    \b
    Keys: %(cpu)d %(tsc)d %(event)d %(1)d..%(5)d (Xen's), %(reltsc)d (cycles since
    the PCPU's previous record), %(time)d (ns on the common time axis), %(name)s,
    %(kind)s (the IPI kind or hypercall),
    %(12)d and %(34)d (d1:d2 and d3:d4 as one 64-bit number). A record whose id
    has no rule takes rule 0, or is not printed. %(time)d is -1 for a record with
    no time anchor of its PCPU before it in the trace (before its time was up, or
    the first few ms a live reader took)."""
    from smpxen.trace.formats import Formatter, FormatsError, read_formats, shipped_formats
    try:
        rules = read_formats(formats or shipped_formats())
    except FormatsError as e:
        _fail("xentrace-format", str(e))
    fmt = Formatter(rules, mhz)
    out = sys.stdout
    try:
        for rec in _records(trace_path, "xentrace-format"):
            line = fmt.format(rec)
            if line is not None:
                out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()          # `| head`: stop quietly, as a filter should


@click.command("xentrace-cpusplit")
@click.argument("base_name")
@click.argument("trace", required=False)
def xentrace_cpusplit(base_name, trace):
    """Split a trace (TRACE, default stdin) into one file per PCPU, named BASE_NAME
    followed by the PCPU number (BASE_NAME0, BASE_NAME1, ...: Xen's
    xentrace_cpusplit), each in the same binary format and in its PCPU's order.
    The files written are listed on stderr."""
    files = {}
    try:
        for rec in _records(trace, "xentrace-cpusplit"):
            f = files.get(rec.cpu)
            if f is None:
                try:
                    f = files[rec.cpu] = open(f"{base_name}{rec.cpu}", "wb")
                except OSError as e:
                    _fail("xentrace-cpusplit", f"{base_name}{rec.cpu}: {e.strerror or e}")
            f.write(rec.pack())
    finally:
        for f in files.values():
            f.close()
    click.echo(f"smpxen xentrace-cpusplit: {', '.join(f'{base_name}{c}' for c in sorted(files)) or 'no records'}",
               err=True)


@click.command("trace-export")
@click.option("--chrome", "chrome_out", required=True, metavar="OUT.json",
              help="Write the Trace Event Format JSON that Perfetto and chrome://tracing open.")
@click.argument("trace", required=False)
def trace_export(chrome_out, trace):
    """Export a trace (TRACE, default stdin) as a timeline that ui.perfetto.dev or
    chrome://tracing opens: one track per PCPU on the common time axis (system
    time, from each PCPU's time anchors: record the `time` class), each domain's
    stints as slices with its hypercalls inside (`sched`, `hcall`), IPIs as arrows
    from sender to receiver (`ipi`), and event-channel sends as arrows to where
    their port was set (`evtchn`). Prints what the placement found (records
    placed, IPI pairs, inversions) as JSON."""
    from smpxen.trace.chrome import export_chrome
    try:
        summary = export_chrome(_records(trace, "trace-export"), chrome_out)
    except OSError as e:
        _fail("trace-export", f"{chrome_out}: {e.strerror or e}")
    click.echo(json.dumps(summary, indent=2))


@click.command("trace-skew")
@click.argument("trace", required=False)
@click.option("--window-ms", type=click.IntRange(1, 3_600_000), default=1000, show_default=True,
              help="Length of the windows the skew is followed over.")
def trace_skew(trace, window_ms):
    """How far apart the PCPUs' clocks are, as the trace shows it (TRACE, default
    stdin; record the `ipi` and `time` classes at least): every record on the common
    time axis (the time model's own anchors), every IPI paired with its receive, and
    how many receives come before their sends, with the largest such inversion.

    \b
    JSON on stdout: `inversions` over the whole trace, and `windows`: per window
    and pair of PCPUs a < b, the IPIs each way, the inverted ones, b's system time
    minus a's (`offset_us`, within +-`one_way_us`) and a one-way trip no skew can
    shrink (`one_way_us`), from the exchange (an IPI and the first one back) with
    the fastest round trip, as NTP estimates a clock's offset."""
    from smpxen.trace.timeline import analyse
    click.echo(json.dumps(analyse(_records(trace, "trace-skew"), window_ms * 1_000_000), indent=2))


COMMANDS = (xentrace, xentrace_format, xentrace_cpusplit, trace_export, trace_skew)
