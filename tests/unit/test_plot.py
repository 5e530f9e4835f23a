"""`smpxen plot` (smpxen/sweep/plot.py) on summaries written by the sweep's own
writer: medians and min-max bars over repeats, speedup relative to the fewest
PCPUs, labels and the host caption, one-line errors."""

import pytest

from smpxen.sweep.plot import PlotError, _series, plot_main
from support.plots import scaling_rows, write_results

pytest.importorskip("matplotlib", reason="smpxen plot needs matplotlib (pip install 'smpxen[plot]')")

def test_series_are_medians_with_min_max_over_repeats():
    rows = [{"x": 1, "y": v, "g": "a"} for v in (3, 1, 2)] + [{"x": 2, "y": 10, "g": "a"},
                                                              {"x": 1, "y": 7, "g": "b"}]
    s = _series(rows, "x", "y", ["g"])
    assert s == {("a",): [(1, 2, 1, 3, 3), (2, 10, 10, 10, 1)], ("b",): [(1, 7, 7, 7, 1)]}


def test_speedup_figure_has_ideal_line_efficiency_units_and_host(tmp_path):
    d = write_results(tmp_path / "r", scaling_rows(), ["machine.cpus", "machine.time_model"])
    (svg,) = plot_main(str(d), kind="speedup", out=str(tmp_path / "s.svg"))
    text = svg.read_text()
    for expected in ("ideal (linear)", "speedup over 1 PCPU", "efficiency (speedup / ideal)",
                     "time_model=xen2", "time_model=percpu",
                     "median, bars min-max over repeats", "Host: 2 host CPUs, Python 3.11.7, "
                     "Linux-test", "18 runs", "aggregate guest MIPS (spin guests)"):
        assert expected in text, expected


def test_every_kind_draws_a_png(tmp_path):
    rows = []
    for rep in range(2):
        for n in (2, 4, 8):
            rows.append({"machine.cpus": n, "domain.1.cpu": n - 1, "repeat": rep, "exit_status": 0,
                         "pcpus": n, "dom.initiator.rtt_median_us": 100 + 10 * n + rep})
    lat = write_results(tmp_path / "lat", rows, ["machine.cpus", "domain.1.cpu"])
    rows = []
    for model in ("xen2", "percpu"):
        for drift in (0, 100, 500):
            rows.append({"machine.time_model": model, "clock.pcpu.0.drift_ppm": drift,
                         "repeat": 0, "exit_status": 0,
                         "time_skew.max_pairwise_ns": 1000 + drift * (50 if model == "xen2" else 1)})
    skew = write_results(tmp_path / "skew", rows, ["machine.time_model", "clock.pcpu.0.drift_ppm"])
    rows = []
    for mcu in (10, 20, 40):
        rows.append({"domain.1.bvt.mcu_advance": mcu, "repeat": 0, "exit_status": 3,
                     "dom.a.cpu_share": 0.5 + mcu / 100, "dom.a.expected_share": mcu / (10 + mcu),
                     "dom.b.cpu_share": 0.5 - mcu / 100, "dom.b.expected_share": 10 / (10 + mcu)})
    fair = write_results(tmp_path / "fair", rows, ["domain.1.bvt.mcu_advance"])
    for d, kind, extra in ((lat, "latency", {}), (skew, "skew", {}), (fair, "fairness", {}),
                           (lat, "xy", {"x": "pcpus", "y": "dom.initiator.rtt_median_us"})):
        (png,) = plot_main(str(d), kind=kind, out=str(tmp_path / f"{kind}.png"), **extra)
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, kind
    # Lines group by grid columns that vary independently of x (domain.1.cpu follows
    # machine.cpus, so the latency plot has one line).
    (svg,) = plot_main(str(lat), kind="latency", out=str(tmp_path / "lat.svg"))
    assert "all runs" in svg.read_text() and "cpu=" not in svg.read_text()
    (svg,) = plot_main(str(skew), kind="skew", out=str(tmp_path / "skew.svg"))
    assert "time_model=xen2" in svg.read_text() and "(us)" in svg.read_text()


def test_the_plots_a_sweep_lists_are_drawn_into_its_directory(tmp_path):
    d = write_results(tmp_path / "r", scaling_rows(), ["machine.cpus", "machine.time_model"],
                      plots=[{"kind": "speedup"},
                             {"kind": "xy", "x": "pcpus", "y": "agg.spin_mips", "out": "mips.png"}])
    paths = plot_main(str(d / "summary.csv"))
    assert paths == [d / "speedup.png", d / "mips.png"] and all(p.stat().st_size for p in paths)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "xy", "x": "pcpus", "y": "nope"}, "no column 'nope' in the summary"),
    ({"kind": "xy", "x": "pcpus"}, "--kind xy needs --x COL and --y COL"),
    ({"kind": "pie"}, "--kind: expected one of"),
    ({"kind": "speedup", "out": "f.gif"}, "expected a .png, .svg or .pdf file"),
    ({}, "no --kind given and its sweep lists no plots"),
])
def test_plot_errors(tmp_path, kwargs, message):
    d = write_results(tmp_path / "r", scaling_rows(), ["machine.cpus", "machine.time_model"])
    kwargs.setdefault("out", None)
    if kwargs["out"]:
        kwargs["out"] = str(tmp_path / kwargs["out"])
    with pytest.raises(PlotError, match=message.replace(".", r"\.").replace("(", r"\(")):
        plot_main(str(d), **kwargs)


def test_plot_help_names_exactly_the_kinds_it_draws():
    from smpxen.sweep.cli import plot
    from smpxen.sweep.plot import KINDS
    help_text = next(p.help for p in plot.params if p.name == "kind")
    named = {w.strip(" .") for w in help_text.split("Default")[0].replace("(", "|").replace(")", "|").split("|")}
    assert set(KINDS) <= named
    assert not {"efficiency", "shootdown"} & named      # not kinds: refused by plot_main
