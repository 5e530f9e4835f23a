"""The trace tools on synthetic traces (smpxen/trace/): the record file, masks,
formats files, cpusplit, the common time axis and its inversions, the Chrome
export, and the trace keys of a machine config."""
import io
import json
import struct

import pytest
from click.testing import CliRunner

from smpxen.trace.formats import Formatter, FormatsError, event_name, read_formats, shipped_formats
from smpxen.trace.kinds import IPI_CODES
from smpxen.trace.mask import MaskError, describe_mask, parse_mask
from smpxen.trace.records import Record, TraceFileError, frame, iter_records
from smpxen.trace.timeline import analyse
from smpxen.xen import trace as T
from smpxen.ipc import messages as M

NS = 1 << 31          # ns per cycle, 32.32: half a nanosecond (a 2 GHz counter)


def anchor(cpu, cycles, stime):
    return Record(cpu, cycles, T.TRC_TIME_ANCHOR, (stime & 0xFFFFFFFF, stime >> 32, NS, 0, 0))


def ipi(cpu, cycles, send, other, kind, seq, w4=0, w5=0):
    return Record(cpu, cycles, T.TRC_IPI_SEND if send else T.TRC_IPI_RECV,
                  (other, IPI_CODES[kind], seq, w4, w5))


def write(path, records):
    path.write_bytes(b"".join(r.pack() for r in records))
    return str(path)


# ---- the record file --------------------------------------------------------------
def test_frame_interleaves_the_cpu_word_as_xentrace_writes_it():
    raw = struct.pack(T.REC_FORMAT, 1, 2, 3, 4, 5, 6, 7) + struct.pack(T.REC_FORMAT, 8, 9, 10, 11, 12, 13, 14)
    data = frame(3, raw)
    assert len(data) == 2 * T.FILE_REC_SIZE == 72
    assert list(iter_records(io.BytesIO(data))) == [Record(3, 1, 2, (3, 4, 5, 6, 7)),
                                                    Record(3, 8, 9, (10, 11, 12, 13, 14))]


def test_a_file_that_ends_inside_a_record_is_one_error_after_the_whole_ones():
    data = Record(0, 1, 2, (0,) * 5).pack() * 2
    out = []
    with pytest.raises(TraceFileError, match="ends inside a record at byte 36"):
        for r in iter_records(io.BytesIO(data[:-5]), "t.bin"):
            out.append(r)
    assert len(out) == 1


def test_every_message_between_pcpus_has_an_ipi_code():
    """A receive is traced for every message from another PCPU (smpxen/pcpu/mailbox.py),
    so each kind a PCPU sends must have its own code, or its sends and receives
    would pair across kinds."""
    import pathlib
    import re
    import smpxen.pcpu
    sent = set()
    for f in pathlib.Path(smpxen.pcpu.__file__).parent.glob("*.py"):
        sent |= set(re.findall(r"send_ipi\([^,()]+,\s*M\.([A-Z_]+)", f.read_text()))
    assert {"IPI_CALL", "IPI_EVTCHN_SET", "PRIVCMD"} <= sent
    # smpxen/pcpu/ctrl_if.py passes these two on to the domain's PCPU by a variable kind.
    kinds = {getattr(M, name) for name in sent} | M.IPI_KINDS | {M.CTRL_REQUEST, M.CONSOLE_INPUT}
    assert kinds <= set(IPI_CODES)
    assert len(set(IPI_CODES.values())) == len(IPI_CODES) and 0 not in IPI_CODES.values()


def test_a_file_that_is_not_a_trace_is_one_error():
    text = b"[machine]\ncpus = 2\n" * 4              # 72 bytes: two "records"
    with pytest.raises(TraceFileError, match="byte 0 names CPU .*not a trace file"):
        list(iter_records(io.BytesIO(text), "m.toml"))
    last = Record(127, 1, 2, (0,) * 5).pack()         # the highest PCPU is fine
    assert [r.cpu for r in iter_records(io.BytesIO(last))] == [127]


# ---- masks --------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("all", 0xFFFF0000), ("sched", T.TRC_SCHED), ("sched,ipi", T.TRC_SCHED | T.TRC_IPI),
    ("hcall|time", T.TRC_HCALL | T.TRC_TIME), ("0x00020000", 0x20000), ("131072", 0x20000), (5, 5)])
def test_masks(text, value):
    assert parse_mask(text) == value


@pytest.mark.parametrize("bad, why", [("sched,bogus", "unknown class 'bogus'"), ("", "empty"),
                                      (0, "records nothing"), (1 << 32, "32-bit"), (True, "number")])
def test_bad_masks(bad, why):
    with pytest.raises(MaskError, match=why):
        parse_mask(bad)


def test_describe_mask():
    assert describe_mask(0xFFFF0000) == "all"
    assert describe_mask(T.TRC_SCHED | T.TRC_IPI) == "sched|ipi"
    assert describe_mask(0x20001) == "0x00020001"


# ---- formats ------------------------------------------------------------------------
def test_shipped_formats_cover_every_id_and_every_dom0_op():
    rules = read_formats(shipped_formats())
    assert set(T.NAMES) <= set(rules)
    from smpxen.xen import dom0_ops as D
    for cmd in (D.DOM0_GETTBUFS, D.DOM0_SCHED_ID, D.DOM0_PINCPUDOMAIN):
        assert T.TRC_DOM0OP_ENTER_BASE + cmd in rules and T.TRC_DOM0OP_LEAVE_BASE + cmd in rules
    assert 0 in rules


def test_format_keys_xens_and_smpxens(tmp_path):
    path = tmp_path / "f"
    path.write_text("# a comment\n\n0x01000001 cpu=%(cpu)d tsc=%(tsc)d ev=%(event)#x d1=%(1)d "
                    "rel=%(reltsc)d t=%(time)d %(name)s %(kind)s big=%(34)d\n")
    fmt = Formatter(read_formats(str(path)))
    recs = [anchor(0, 100, 5000), Record(0, 300, T.TRC_HCALL_ENTRY, (3, 17, 1, 2, 0))]
    assert fmt.format(recs[0]) is None                  # no rule for it, no rule 0
    assert fmt.format(recs[1]) == ("cpu=0 tsc=300 ev=0x1000001 d1=3 rel=200 t=5100 hcall_entry "
                                   "xen_version big=8589934593")
    assert Formatter({T.TRC_HCALL_ENTRY: "%(tsc).6f"}, mhz=1).format(recs[1]) == "0.000300"


def test_rule_zero_is_the_default(tmp_path):
    path = tmp_path / "f"
    path.write_text("0 other %(event)#x\n")
    assert Formatter(read_formats(str(path))).format(Record(1, 1, 0x123, (0,) * 5)) == "other 0x123"


@pytest.mark.parametrize("text, why", [("0x20001\n", "line 1: expected an event id and a format"),
                                       ("\nzz %(cpu)d\n", "line 2: 'zz' is not an event id"),
                                       ("1 %(6)d\n", "line 1: bad format"),
                                       ("1 %(cpu)q\n", "line 1: bad format")])
def test_bad_formats_files(tmp_path, text, why):
    path = tmp_path / "f"
    path.write_text(text)
    with pytest.raises(FormatsError, match=why):
        read_formats(str(path))


def test_event_names():
    assert event_name(T.TRC_SCHED_SWITCH) == "sched_switch"
    assert event_name(T.TRC_DOM0OP_LEAVE_BASE + 21) == "dom0_op_leave_gettbufs"
    assert event_name(T.TRC_DOM0OP_ENTER_BASE + 999) == "dom0_op_enter_999"
    assert event_name(0x0BAD0001) == "0x0bad0001"


def test_xentrace_format_command(tmp_path):
    from smpxen.trace.cli import xentrace_format
    trace = write(tmp_path / "t.bin", [anchor(1, 10, 0), Record(1, 20, T.TRC_SCHED_T_TIMER_FN, (0,) * 5)])
    res = CliRunner().invoke(xentrace_format, ["--trace", trace])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert len(lines) == 2 and "time anchor" in lines[0] and "t_timer_fn" in lines[1]
    assert lines[1].startswith("CPU1  20 (+      10)")
    bad = tmp_path / "bad"
    bad.write_text("nonsense\n")
    res = CliRunner().invoke(xentrace_format, [str(bad), "--trace", trace])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "line 1" in res.output


# ---- cpusplit -----------------------------------------------------------------------
def test_cpusplit_writes_each_pcpus_records_in_order(tmp_path):
    from smpxen.trace.cli import xentrace_cpusplit
    recs = [Record(c, i, T.TRC_SCHED_YIELD, (i, 0, 0, 0, 0)) for i, c in enumerate([0, 1, 0, 2, 1, 0])]
    trace = write(tmp_path / "t.bin", recs)
    res = CliRunner().invoke(xentrace_cpusplit, [str(tmp_path / "cpu"), trace])
    assert res.exit_code == 0, res.output
    for cpu in (0, 1, 2):
        with open(tmp_path / f"cpu{cpu}", "rb") as f:
            assert list(iter_records(f)) == [r for r in recs if r.cpu == cpu]
    assert not (tmp_path / "cpu3").exists()


def test_tools_refuse_a_missing_or_torn_trace_in_one_line(tmp_path):
    from smpxen.trace.cli import trace_skew
    res = CliRunner().invoke(trace_skew, [str(tmp_path / "nope.bin")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "No such file" in res.output
    (tmp_path / "torn.bin").write_bytes(b"\0" * 40)
    res = CliRunner().invoke(trace_skew, [str(tmp_path / "torn.bin")])
    assert res.exit_code == 2 and "ends inside a record" in res.output


# ---- the time axis and inversions ---------------------------------------------------------
def skewed_trace(skew_ns):
    """Two PCPUs whose system times differ by skew_ns (PCPU 1 ahead); messages take
    30 us; PCPU 0 calls PCPU 1 and PCPU 1 replies, three times."""
    recs = [anchor(0, 0, 1_000_000), anchor(1, 4_000_000, 1_000_000 + skew_ns)]
    for i in range(3):
        t = 100_000 * (i + 1)                   # ns after both anchors, in true time
        recs.append(ipi(0, 2 * t, True, 1, M.IPI_CALL, i + 1, i + 1))
        recs.append(ipi(1, 4_000_000 + 2 * (t + 30_000), False, 0, M.IPI_CALL, i + 1, i + 1))
        recs.append(ipi(1, 4_000_000 + 2 * (t + 31_000), True, 0, M.IPI_REPLY, i + 1, i + 1))
        recs.append(ipi(0, 2 * (t + 61_000), False, 1, M.IPI_REPLY, i + 1, i + 1))
    return recs


def test_records_are_placed_from_their_pcpus_anchor():
    a = analyse(skewed_trace(0))
    assert a["anchors"] == 2 and a["unplaced"] == 0 and a["unmatched_ipis"] == 0
    inv = a["inversions"]
    assert inv["ipi_pairs"] == 6 and inv["inverted"] == 0 and inv["max_inversion_ns"] == 0
    assert inv["latency_us"]["median"] == 30.0


def test_a_receive_before_its_send_is_an_inversion_of_the_skew_less_the_latency():
    inv = analyse(skewed_trace(-50_000))["inversions"]      # PCPU 1 behind by 50 us
    assert inv["inverted"] == 3                             # the calls 0 -> 1 arrive "early"
    assert inv["max_inversion_ns"] == 20_000
    assert inv["worst"] == {"from_pcpu": 0, "to_pcpu": 1, "kind": M.IPI_CALL, "by_ns": 20_000}


def test_pairs_match_by_sender_receiver_kind_and_number_in_any_file_order():
    recs = skewed_trace(0)
    a = analyse(list(reversed(recs[2:])) + recs[:2])
    assert a["inversions"]["ipi_pairs"] == 6 and a["unmatched_ipis"] == 0
    assert a["unplaced"] == 12                              # before their anchors in the file


def test_windows_follow_the_offset_as_it_changes():
    """PCPU 1 is 10 us ahead for the first millisecond, then 20 us behind (a new
    anchor); the fastest trip each way is 30 us, then 15 us."""
    recs = [anchor(0, 0, 0), anchor(1, 0, 10_000)]
    trips = [(0, 100_000, 30_000), (0, 300_000, 50_000), (1, 200_000, 30_000), (1, 400_000, 45_000)]
    later = [(0, 1_100_000, 15_000), (1, 1_200_000, 15_000)]
    seq = {0: 0, 1: 0}

    def trip(src, t, took):          # both counters read 2 * true ns; the anchors carry the offset
        seq[src] += 1
        dst = 1 - src
        return [ipi(src, 2 * t, True, dst, M.IPI_CALL, seq[src]),
                ipi(dst, 2 * (t + took), False, src, M.IPI_CALL, seq[src])]
    for src, t, took in trips:
        recs += trip(src, t, took)
    recs.append(anchor(1, 2 * 1_000_000, 1_000_000 - 20_000))   # from here PCPU 1 is 20 us behind
    for src, t, took in later:
        recs += trip(src, t, took)
    a = analyse(recs, window_ns=1_000_000)
    assert a["unmatched_ipis"] == 0
    assert a["windows"] == [
        {"from_s": 0.0, "pcpus": [0, 1], "ipis": [2, 2], "inverted": 0, "max_inversion_us": 0.0,
         "offset_us": 10.0, "one_way_us": 30.0},
        {"from_s": 0.001, "pcpus": [0, 1], "ipis": [1, 1], "inverted": 1, "max_inversion_us": 5.0,
         "offset_us": -20.0, "one_way_us": 15.0}]
    assert a["inversions"]["inverted"] == 1


def test_trace_skew_command_windows(tmp_path):
    from smpxen.trace.cli import trace_skew
    trace = write(tmp_path / "t.bin", skewed_trace(-50_000))
    res = CliRunner().invoke(trace_skew, [trace, "--window-ms", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["inversions"]["inverted"] == 3
    (w,) = out["windows"]
    assert (w["pcpus"], w["ipis"], w["inverted"], w["offset_us"], w["one_way_us"]) == ([0, 1], [3, 3], 3, -50.0, 30.0)
    res = CliRunner().invoke(trace_skew, [trace, "--window-ms", "0"])
    assert res.exit_code == 2


def test_no_anchors_no_axis():
    a = analyse([Record(0, 1, T.TRC_SCHED_YIELD, (0,) * 5)])
    assert a["inversions"] is None and a["unplaced"] == 1


# ---- the Chrome export -----------------------------------------------------------------
def test_chrome_export_tracks_slices_and_flows(tmp_path):
    from smpxen.trace.chrome import export_chrome
    recs = [Record(0, 1, T.TRC_SCHED_YIELD, (1, 0, 0, 0, 0)),     # before its anchor: unplaced
            anchor(0, 0, 0), anchor(1, 0, 0),
            Record(0, 2000, T.TRC_SCHED_SWITCH, (T.IDLE_DOMAIN_ID, 0, 1, 0, 0)),
            Record(0, 4000, T.TRC_HCALL_ENTRY, (1, 16, 4, 0, 0)),
            Record(0, 5000, T.TRC_EVTCHN_SEND, (2, 5, 1, 0, 0)),
            ipi(0, 6000, True, 1, M.IPI_EVTCHN_SET, 1, 2, 5),
            Record(0, 8000, T.TRC_HCALL_EXIT, (1, 16, 0, 0, 0)),
            ipi(1, 70000, False, 0, M.IPI_EVTCHN_SET, 1, 2, 5),
            Record(1, 72000, T.TRC_EVTCHN_SET, (2, 5, 1, 0, 0)),
            Record(0, 20000, T.TRC_SCHED_SWITCH, (1, 0, T.IDLE_DOMAIN_ID, 0, 0))]
    out = tmp_path / "c.json"
    summary = export_chrome(recs, str(out))
    doc = json.loads(out.read_text())
    ev = doc["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {0: "PCPU 0", 1: "PCPU 1"}
    dom = [e for e in ev if e.get("cat") == "domain"]
    assert [(e["name"], e["tid"], e["ts"], e["dur"]) for e in dom] == [("d1", 0, 1.0, 9.0)]
    (hc,) = [e for e in ev if e.get("cat") == "hypercall"]
    assert (hc["name"], hc["ts"], hc["dur"]) == ("event_channel_op", 2.0, 2.0)
    flows = {}
    for e in ev:
        if e["ph"] in "sf":
            flows.setdefault((e["cat"], e["id"]), {})[e["ph"]] = (e["tid"], e["ts"])
    assert flows[("ipi", 1)] == {"s": (0, 3.0), "f": (1, 35.0)}
    assert flows[("evtchn", 2)] == {"s": (0, 2.5), "f": (1, 36.0)}
    assert summary["records_unplaced"] == 1 and summary["inversions"]["ipi_pairs"] == 1
    assert doc["otherData"]["smpxen"] == summary


def test_chrome_export_links_events_whichever_pcpus_records_come_first(tmp_path):
    """The reader writes each PCPU's records in chunks: here PCPU 1's (the receive
    and the setting) come before PCPU 0's (the send); a local send comes last."""
    from smpxen.trace.chrome import export_chrome
    pcpu1 = [anchor(1, 0, 0), ipi(1, 70000, False, 0, M.IPI_EVTCHN_SET, 1, 2, 5),
             Record(1, 72000, T.TRC_EVTCHN_SET, (2, 5, 1, 0, 0))]
    pcpu0 = [anchor(0, 0, 0), Record(0, 5000, T.TRC_EVTCHN_SEND, (2, 5, 1, 0, 0)),
             ipi(0, 6000, True, 1, M.IPI_EVTCHN_SET, 1, 2, 5),
             Record(0, 9000, T.TRC_EVTCHN_SEND, (1, 3, 1, 0, 0)),
             Record(0, 9500, T.TRC_EVTCHN_SET, (1, 3, 1, 0, 0))]
    out = tmp_path / "c.json"
    export_chrome(pcpu1 + pcpu0, str(out))
    flows = {}
    for e in json.loads(out.read_text())["traceEvents"]:
        if e["ph"] in "sf" and e["cat"] == "evtchn":
            flows.setdefault(e["id"], {})[e["ph"]] = (e["tid"], e["ts"])
    assert sorted(flows.values(), key=lambda f: f["s"]) == [{"s": (0, 2.5), "f": (1, 36.0)},
                                                            {"s": (0, 4.5), "f": (0, 4.75)}]


# ---- config --------------------------------------------------------------------------------
def test_config_trace_keys(tmp_path):
    from smpxen.config import ConfigError, load_config
    from smpxen.shm.layout import Layout
    base = '[[domain]]\nkernel = "hello"\n'
    p = tmp_path / "m.toml"
    p.write_text('[machine]\ncpus = 2\nmemory_mib = 32\ntrace_pages = 16\ntrace_mask = "sched,ipi"\n' + base)
    cfg = load_config(p, bundled_guests={"hello"}, reserve_bytes=Layout.reserve_bytes)
    assert (cfg.trace_pages, cfg.trace_mask) == (16, T.TRC_SCHED | T.TRC_IPI)
    assert cfg.to_dict()["trace_pages"] == 16
    p.write_text("[machine]\ncpus = 2\n" + base)
    plain = load_config(p, bundled_guests={"hello"}, reserve_bytes=Layout.reserve_bytes)
    assert (plain.trace_pages, plain.trace_mask) == (0, 0xFFFF0000)
    p.write_text("[machine]\ncpus = 2\ntrace_pages = 1024\n" + base)        # "auto" makes room
    big = load_config(p, bundled_guests={"hello"}, reserve_bytes=Layout.reserve_bytes)
    assert big.memory_bytes >= plain.memory_bytes + 2 * 1024 * 4096
    for text, why in [("trace_pages = -1", "machine.trace_pages: must be between 0 and 4096"),
                      ('trace_mask = "nope"', "machine.trace_mask: unknown class 'nope'"),
                      ("trace_pages = 4096\nmemory_mib = 16", "reserved for the hypervisor")]:
        p.write_text(f"[machine]\ncpus = 2\n{text}\n" + base)
        with pytest.raises(ConfigError, match=why) as e:
            load_config(p, bundled_guests={"hello"}, reserve_bytes=Layout.reserve_bytes)
        assert "\n" not in str(e.value)
