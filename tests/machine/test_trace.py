"""Trace buffers on real machines: a traced run whose records are where and in the
order they must be, DOM0_GETTBUFS from Domain-0, `smpxen xentrace` reading a live
machine through its control endpoint (one reader at a time), the tools over the result, the ring between two
processes, and bad options refused in one line."""
import json
import mmap
import multiprocessing
import os
import signal
import subprocess
import time

import pytest

from smpxen.shm.layout import Layout
from smpxen.testing import console_values, kill_group, run_up, smpxen_command, spawn_machine, write_config
from smpxen.trace.kinds import EVTCHN_SET_CODE
from smpxen.trace.records import read_records
from smpxen.trace.ring import TraceReader, TraceWriter, format_buffer
from smpxen.trace.timeline import IpiPairs, analyse
from smpxen.xen import trace as T
from smpxen.xen.trace import REC_FORMAT, REC_SIZE, TBUF_HEADER

TRACED = """
[machine]
cpus = 2
[dom0]
kernel = "trace_gettbufs"
cpu = 0
cmdline = "50"
[[domain]]
name = "responder"
kernel = "evtchn_pingpong"
cpu = 0
cmdline = "self={domid} peer=2 count=200"
[[domain]]
name = "initiator"
kernel = "evtchn_pingpong"
cpu = 1
cmdline = "self={domid} peer=1 count=200"
"""


def run_cli(*args, timeout=60):
    return subprocess.run(smpxen_command(*args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(120)
def test_traced_run_has_the_records_in_order(tmp_path, no_leaks):
    trace = tmp_path / "run.bin"
    result = run_up("--config", write_config(tmp_path, TRACED), "--quiet", "--trace", trace,
                    report_dir=tmp_path, timeout=120)
    assert result.status == 0, result.stderr
    rep = result.report
    assert rep["trace"]["lost"] == 0 and rep["trace"]["records"] == trace.stat().st_size // 36 > 0
    assert [p["trace"]["lost"] for p in rep["pcpus"]] == [0, 0]

    # DOM0_GETTBUFS as Domain-0 sees it: where PCPU 0's buffer is, and each one's size.
    d0 = console_values(result.domain("dom0"))
    layout = Layout.compute(rep["config"]["memory_bytes"], 2, trace_pages=256)
    assert (d0["gettbufs"], d0["tbuf_maddr"], d0["tbuf_size"]) == (0, layout.tbuf_maddr(0), 256 * 4096)
    assert console_values(result.domain("initiator"))["received"] == 200

    records = read_records(str(trace))
    per_cpu = {0: [], 1: []}
    for r in records:
        per_cpu[r.cpu].append(r)
    for cpu, recs in per_cpu.items():
        running, open_call = None, None
        for r in recs:
            if r.event == T.TRC_SCHED_SWITCH:
                assert open_call is None, "switched while a hypercall was in progress"
                running = r.d[2]
            elif r.event == T.TRC_HCALL_ENTRY:
                assert r.d[0] == running, f"pcpu{cpu}: d{r.d[0]}'s hypercall before it was switched in"
                assert open_call is None
                open_call = (r.d[0], r.d[1])
            elif r.event == T.TRC_HCALL_EXIT:
                assert open_call == (r.d[0], r.d[1])
                open_call = None
        first = next(i for i, r in enumerate(recs) if r.event == T.TRC_TIME_ANCHOR)
        cycles = [r.cycles for r in recs[first:]]     # from the boot barrier on: one counter
        assert cycles == sorted(cycles)
    events = [r.event for r in per_cpu[0]]
    assert events.index(T.TRC_SCHED_DOM_ADD) < events.index(T.TRC_SCHED_SWITCH)
    enter, leave = T.TRC_DOM0OP_ENTER_BASE + 21, T.TRC_DOM0OP_LEAVE_BASE + 21    # GETTBUFS
    assert events.index(enter) < events.index(leave)
    assert [r.d[0] for r in per_cpu[0] if r.event == leave] == [0]
    assert {r.d[0] for r in records if r.event == T.TRC_SCHED_SHUTDOWN} == {0, 1, 2}

    # Every IPI received was sent (numbered per sender, receiver and kind); the
    # ping-pong's events crossed as IPI_EVTCHN_SET both ways.
    pairs = IpiPairs()
    for i, r in enumerate(records):
        pairs.feed(r, 0, i)
    assert not pairs.recvs
    crossed = {(s, d) for _ts, _tr, s, d, code, _si, _ri in pairs.pairs if code == EVTCHN_SET_CODE}
    assert crossed == {(0, 1), (1, 0)}
    sends = [r for r in records if r.event == T.TRC_EVTCHN_SEND and r.d[2] in (1, 2)]
    assert len(sends) >= 400 and {r.d[0] for r in sends} == {1, 2}

    a = analyse(records)
    assert a["anchors"] >= 2 and a["inversions"]["placed_pairs"] > 0
    # The skew-free one-way trip of each window's fastest exchange: a trip takes time,
    # whatever the skew (placing exchanges across a PCPU's new anchor could shrink it).
    trips = [w["one_way_us"] for w in a["windows"] if w["one_way_us"] is not None]
    assert trips and min(trips) > 0

    out = run_cli("xentrace-format", "--trace", trace)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == len(records) and not any("unknown event" in ln for ln in lines)
    chrome = tmp_path / "run.json"
    out = run_cli("trace-export", "--chrome", chrome, trace)
    assert out.returncode == 0 and json.loads(out.stdout)["inversions"]["ipi_pairs"] == len(pairs.pairs)
    doc = json.loads(chrome.read_text())
    tracks = {e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert tracks == {"PCPU 0", "PCPU 1"}
    domains = {e["name"] for e in doc["traceEvents"] if e.get("cat") == "domain"}
    assert {"d0", "d1", "d2"} <= domains
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "s" and e["cat"] == "ipi") > 400
    # Every event that crossed (one IPI_EVTCHN_SET each in a ping-pong) is an arrow
    # from its send on one PCPU to its port's setting on the other.
    ends = {}
    for e in doc["traceEvents"]:
        if e["ph"] in "sf" and e["cat"] == "evtchn":
            ends.setdefault(e["id"], {})[e["ph"]] = e["tid"]
    carried = sum(1 for *_x, code, _si, _ri in pairs.pairs if code == EVTCHN_SET_CODE)
    assert sum(1 for v in ends.values() if v["s"] != v["f"]) == carried >= 400


@pytest.mark.timeout(120)
def test_xentrace_reads_a_live_machine_and_only_one_reader_at_a_time(tmp_path, no_leaks):
    cfg = write_config(tmp_path, """
[machine]
cpus = 2
trace_pages = 64
[dom0]
kernel = "idle"
cpu = 0
[[domain]]
name = "responder"
kernel = "evtchn_pingpong"
cpu = 1
cmdline = "self={domid} peer={domid} count=100000000"
""")
    machine = spawn_machine("up", "--config", cfg, "--quiet", "--timeout", "90",
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    live = tmp_path / "live.bin"
    first = None
    try:
        pid = machine.pid                 # spawn_machine runs `python -m smpxen up`: the machine
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:        # until the machine is up and xentrace reads it
            first = subprocess.Popen(smpxen_command("xentrace", live, "--machine", pid, "-s", "20"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while first.poll() is None and not (live.exists() and live.stat().st_size > 0):
                time.sleep(0.1)
            if first.poll() is None:
                break
            first.communicate()
            time.sleep(0.5)
        assert first is not None and first.poll() is None, "xentrace never attached"
        second = run_cli("xentrace", tmp_path / "second.bin", "--machine", pid, "--duration", "1")
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1 and "another reader" in second.stderr
        time.sleep(0.5)
        first.send_signal(signal.SIGINT)          # xentrace stops on SIGINT, as Xen's does
        _out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
        assert f"machine {pid}:" in err and "records" in err and "through DOM0_GETTBUFS" in err
        # Into a pipe whose reader goes away (`| head -c 360`): it stops, says so, exit 0.
        piped = subprocess.Popen(smpxen_command("xentrace", "--machine", pid, "--duration", "60", "-s", "10"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = piped.stdout.read(360)
        piped.stdout.close()
        piped_err = piped.stderr.read().decode()
        assert piped.wait(timeout=30) == 0 and len(head) == 360, piped_err
        assert piped_err.count("\n") == 1 and "output closed" in piped_err
        assert machine.poll() is None, "reading stopped the machine"
    finally:
        if first is not None and first.poll() is None:
            first.kill()
            first.wait()
        machine.send_signal(signal.SIGTERM)
        try:
            machine.wait(timeout=30)
        finally:
            kill_group(machine)
    records = read_records(str(live))
    assert {r.cpu for r in records} == {0, 1}
    assert any(r.event == T.TRC_TIME_ANCHOR for r in records)
    assert sum(1 for r in records if r.event == T.TRC_HCALL_ENTRY and r.cpu == 1) > 100


def _writer(mem, n):
    w = TraceWriter(mem, 0, 0xFFFF0000, None)
    for i in range(n):
        w.put(i, T.TRC_SCHED_YIELD, i)
    while w.pending_lost:                # let the last gap be announced
        w.put(n, T.TRC_SCHED_YIELD, n)
        n += 1


@pytest.mark.timeout(60)
def test_ring_between_two_processes(no_leaks):
    """A writer process and this reader share a 16-slot ring: every record arrives
    once and in order, and every gap is announced with its exact size."""
    mem = mmap.mmap(-1, TBUF_HEADER + 16 * REC_SIZE)
    format_buffer(mem, 0, 0, len(mem))
    reader = TraceReader(mem, 0)
    n = 200_000
    p = multiprocessing.get_context("fork").Process(target=_writer, args=(mem, n))
    p.start()
    import struct
    got = []
    while p.is_alive() or reader.pending():
        raw = reader.take()
        got += [struct.unpack_from(REC_FORMAT, raw, i)[1:3] for i in range(0, len(raw), REC_SIZE)]
    p.join()
    assert p.exitcode == 0
    nxt, announced, kept = 0, 0, 0
    for event, d1 in got:
        if event == T.TRC_LOST_RECORDS:
            announced = d1
            continue
        assert d1 - nxt == announced
        nxt, announced, kept = d1 + 1, 0, kept + 1
    assert nxt >= n and kept >= 16 and reader.lost == nxt - kept     # 15 slots, then the last


@pytest.mark.timeout(60)
def test_bad_trace_options_are_one_line_errors(tmp_path, no_leaks):
    cfg = write_config(tmp_path, '[machine]\ncpus = 1\n[[domain]]\nkernel = "hello"\n')
    for args, why in [(["--trace-mask", "sched,bogus"], "unknown class 'bogus'"),
                      (["--trace-mask", "sched"], "no trace buffers"),
                      (["--trace", tmp_path / "no" / "such" / "dir" / "t.bin"], "--trace"),
                      (["--trace", tmp_path], "is a directory"),
                      (["--set", "machine.trace_pages=5000"], "machine.trace_pages")]:
        result = run_up("--config", cfg, *args, report_dir=tmp_path, timeout=60)
        assert result.status == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and why in result.stderr, (args, result.stderr)
        assert result.report is None
    bad_pid = run_cli("xentrace", tmp_path / "x.bin", "--machine", os.getpid())
    assert bad_pid.returncode == 1 and bad_pid.stderr.count("\n") == 1
    assert f"no running machine '{os.getpid()}'" in bad_pid.stderr
    assert not (tmp_path / "x.bin").exists()
    fmt = tmp_path / "fmt"
    fmt.write_text("0x20001 %(nine)d\n")
    bad_fmt = run_cli("xentrace-format", fmt, "--trace", fmt)
    assert bad_fmt.returncode == 2 and bad_fmt.stderr.count("\n") == 1 and "line 1" in bad_fmt.stderr
