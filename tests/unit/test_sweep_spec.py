"""`smpxen sweep`'s pieces (smpxen/sweep/): --set value parsing, grids and derived
keys, point naming, spec checks, the summary's columns, the shipped experiments."""
import re
from pathlib import Path

import pytest

from smpxen.config.overrides import parse_value
from smpxen.sweep.grid import Axis, Sweep, SweepError, check, derive, load_spec, split_values, toml_text
from smpxen.sweep.plot import KINDS
from smpxen.sweep.summary import report_columns
from support.configs import SPIN


def test_split_values_keeps_quoted_and_bracketed_commas():
    assert split_values("1,2, 4") == ["1", "2", "4"]
    assert split_values('"a,b",c') == ['"a,b"', "c"]
    assert split_values("'x,y'") == ["'x,y'"]
    assert split_values("{ a = 1, b = 2 },[1,2]") == ["{ a = 1, b = 2 }", "[1,2]"]
    assert split_values(r'"q\",r",s') == [r'"q\",r"', "s"]
    for bad in ("1,,2", "", '"open,'):
        with pytest.raises(ValueError):
            split_values(bad)


def test_toml_text_round_trips_through_set_parsing():
    for v in (3, -2, 1.5, 1e-3, True, False, "percpu", "200", "a,b", 'q"uote'):
        assert parse_value(toml_text(v), "machine.name" if isinstance(v, str) else "x") == v


def test_derive_evaluates_arithmetic_of_grid_values():
    vals = {"machine.cpus": 8, "env.X": "1", "machine.time_model": "xen2"}
    assert derive("{machine.cpus} - 1", vals) == (7, "7")
    assert derive("max(1, {machine.cpus} // 4) * 2", vals) == (4, "4")
    assert derive("{machine.cpus} / 4", vals) == (2.0, "2.0")
    assert derive("self={{domid}} peer={machine.cpus}", vals) == \
        ("self={domid} peer=8", "self={domid} peer=8")
    assert derive("{machine.time_model}", vals) == ("xen2", "xen2")
    assert derive("60 {machine.cpus * 256} 3", vals) == ("60 2048 3", "60 2048 3")
    with pytest.raises(ValueError, match=r"\{nope\} is not a grid key"):
        derive("{nope} + 1", vals)


def test_points_cross_axes_name_dirs_and_share_identity_across_repeats(tmp_path):
    sw = Sweep(config_path=tmp_path / "c.toml", config_text=SPIN, repeat=2,
               axes=[Axis("machine.cpus", ["1", "2"]), Axis("machine.time_model", ["percpu"]),
                     Axis("env.SMPXEN_NO_FLUSH_CLOCK", ["0", "1"])],
               derived={"domain.0.cmdline": "{machine.cpus} * 1000"})
    pts = sw.points()
    assert len(pts) == 8
    p = pts[3]
    assert p.name == "machine.cpus=1,machine.time_model=percpu,env.SMPXEN_NO_FLUSH_CLOCK=1,r=1"
    assert p.values == {"machine.cpus": 1, "machine.time_model": "percpu",
                        "env.SMPXEN_NO_FLUSH_CLOCK": "1", "domain.0.cmdline": "1000"}
    assert p.sets == ["machine.cpus=1", "machine.time_model=percpu", "domain.0.cmdline=1000"]
    assert p.env == {"SMPXEN_NO_FLUSH_CLOCK": "1"}
    assert pts[2].identity == pts[3].identity != pts[1].identity
    assert len({q.name for q in pts}) == 8


def test_spec_files_are_checked(tmp_path):
    spec = tmp_path / "x.toml"
    spec.write_text('[sweep]\nconfig = """\n[machine]\ncpus = 1\n"""\nrepeat = 2\n'
                    '[sweep.grid]\n"machine.cpus" = [1, 2]\n[[plot]]\nkind = "speedup"\n')
    sw = load_spec(spec)
    assert sw.inline_config and sw.repeat == 2 and sw.axes[0].texts == ["1", "2"]
    assert sw.plots == [{"kind": "speedup"}]
    for text, msg in [
        ('[sweep]\nconfig = "c.toml"\ncolour = 1\n', "sweep.colour: unknown key"),
        ('[sweep]\nconfig = "missing.toml"\n', "sweep.config: cannot read"),
        ('[sweep]\n', "sweep.config: required"),
        ('[sweep]\nconfig = """\n[machine]\n"""\n[sweep.grid]\n"domain.0.bvt" = [{a = 1}]\n',
         "sweep.grid.domain.0.bvt: expected a string, number or boolean"),
        ('[sweep]\nconfig = """\n[machine]\n"""\n[[plot]]\nout = "x.png"\n', "plot[0].kind: required"),
    ]:
        spec.write_text(text)
        with pytest.raises(SweepError, match=re.escape(msg)):
            load_spec(spec)


def test_report_columns_sum_pcpus_and_flatten_domains():
    report = {
        "exit_status": 0, "timings_s": {"run_s": 1.5}, "ipi_rtt_us_median": 40.0,
        "time_skew": {"probes": 3, "max_pairwise_ns": 900, "last_offsets_ns": [1, 2]},
        "migrations": {"tw": 5},
        "config": {"clocks": [{"freq_hz": 2e9, "drift_ppm": 0.0}, {"freq_hz": 2e9, "drift_ppm": 0.0}]},
        "pcpus": [
            {"index": 0, "hypercalls": 5, "traps": 1, "emulated_s": 0.5, "mm": {"tlb_shootdowns": 2},
             "events": {"upcalls": 3}, "ipis_sent": {"evtchn": 4, "ping": 1}, "ipis_received": {},
             "time": {"calibrations": 2, "warps": 0}, "pid": 99},
            {"index": 1, "hypercalls": 7, "traps": 0, "emulated_s": 0.25, "mm": {"tlb_shootdowns": 1},
             "events": {"upcalls": 0}, "ipis_sent": {"evtchn": 2}, "ipis_received": {"evtchn": 6},
             "time": {"calibrations": 1, "warps": 1}, "pid": 100}],
        "domains": [
            {"name": "s0", "kernel": "spin", "cmdline": "1000000", "pcpu_assigned": 0,
             "cpu_time_ns": 30, "hypercalls": 2, "ended": {"how": "shutdown"}, "bvt": {},
             "console": ["loop_kcycles=1953", "spin done, checksum 1 on pcpu 0"]},
            {"name": "s1", "kernel": "spin", "cmdline": "1000000", "pcpu_assigned": 0,
             "cpu_time_ns": 10, "hypercalls": 2, "ended": None, "bvt": {"mcu_advance": 30},
             "console": ["loop_kcycles=3906"]}]}
    row = report_columns(report)
    assert row["pcpus"] == 2 and row["domains"] == 2
    assert row["pcpu.hypercalls"] == 12 and row["pcpu.traps"] == 1 and row["pcpu.emulated_s"] == 0.75
    assert row["pcpu.mm.tlb_shootdowns"] == 3 and row["pcpu.events.upcalls"] == 3
    assert row["pcpu.ipis_sent"] == 7 and row["pcpu.ipis_sent.evtchn"] == 6
    assert row["pcpu.ipis_received"] == 6 and row["pcpu.time.calibrations"] == 3
    assert "pcpu.pid" not in row and "pcpu.index" not in row
    assert row["time_skew.max_pairwise_ns"] == 900 and "time_skew.last_offsets_ns" not in row
    assert row["migrations.tw"] == 5 and row["timings_s.run_s"] == 1.5
    assert row["dom.s0.loop_kcycles"] == 1953 and row["dom.s0.ended"] == "shutdown"
    assert row["dom.s1.ended"] is None
    # 4e6 instructions in 1953 * 1024 cycles at 2 GHz: 4000 MIPS; twice as long: 2000.
    assert row["dom.s0.mips"] == pytest.approx(4000, rel=1e-3)
    assert row["dom.s1.mips"] == pytest.approx(2000, rel=1e-3)
    assert row["agg.spin_mips"] == pytest.approx(6000, rel=1e-3) and row["agg.spin_domains"] == 2
    # 8e6 instructions over the machine's 1.5 s run.
    assert row["agg.spin_mips_wall"] == pytest.approx(8 / 1.5, rel=1e-3)
    # BVT on PCPU 0: weights 1/10 and 1/30 -> expected 0.75 / 0.25; measured 0.75 / 0.25.
    assert row["dom.s0.cpu_share"] == 0.75 and row["dom.s1.expected_share"] == 0.25
    assert row["agg.bvt_worst_share_error"] == 0


@pytest.mark.parametrize("spec", sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_shipped_experiments_load_every_point(spec):
    """Every point of every experiment in experiments/ loads as `smpxen up` will load it
    (nothing runs): a config change that breaks one fails here."""
    sw = load_spec(spec)
    points = check(sw)
    assert len(points) == sw.repeat * len({p.identity for p in points}) > 0
    assert sw.plots and all(p["kind"] in KINDS for p in sw.plots)
    assert sw.description
