"""`smpxen plot`: figures from a sweep's summary.csv (matplotlib, the optional extra
smpxen[plot]).

Every plotted point is the median over a point's repeats, with an error bar from
their minimum to their maximum; the legend says so, and the caption names the
host(s) the runs came from (CPU count, Python, platform: the summary's host.*
columns) and the run count. Only runs that ended normally (exit status 0, or 3
for time-boxed runs) are drawn.

Kinds (each takes --metric / --x / --group to change its columns):
  speedup   aggregate throughput against PCPUs, relative to the fewest PCPUs, with
            the ideal line; a second panel shows the efficiency (speedup / ideal).
            Default metric agg.spin_mips (smpxen/sweep/derived.py).
  latency   a latency against PCPUs (default dom.initiator.rtt_median_us).
  skew      the PCPUs' system-time spread against the configured drift (default
            time_skew.max_pairwise_ns, shown in us; x: the grid column ending in
            drift_ppm).
  fairness  each domain's CPU share against a BVT weight (x: the grid column ending
            in mcu_advance); dashed lines are the shares the weights ask for.
  xy        --x COL --y COL [--group COL].
Lines are grouped by the grid columns that vary independently of x, unless --group.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from smpxen.sweep.summary import read_csv

OK_STATUS = (0, 3)
KINDS = ("speedup", "latency", "skew", "fairness", "xy")
INSTALL_HINT = "pip install 'smpxen[plot]'"

LABELS = {
    "pcpus": "PCPUs",
    "machine.cpus": "PCPUs",
    "agg.spin_mips": "aggregate guest MIPS (spin guests)",
    "agg.spin_mips_wall": "spin guests' instructions / machine run time (MIPS)",
    "mm.flush_latency_us": "flush before reuse (us per check)",
    "mm.ipis_per_check": "TLB-flush IPIs per check",
    "mm.ipis_avoided_per_check": "IPIs avoided per check",
    "time_skew.max_pairwise_ns": "max system-time spread across PCPUs",
    "time_skew.median_pairwise_ns": "median system-time spread across PCPUs",
    "time_skew.last_pairwise_ns": "last system-time spread across PCPUs",
    "dom.tw.backwards": "backward steps of system time (timewatch guest reads)",
    "dom.initiator.rtt_median_us": "event round trip, median (us)",
    "dom.initiator.rtt_p99_us": "event round trip, p99 (us)",
    "agg.bvt_worst_share_error": "worst relative CPU-share error",
    "env.SMPXEN_NO_FLUSH_CLOCK": "SMPXEN_NO_FLUSH_CLOCK",
}
UNITS = (("_us", "us"), ("_ns", "ns"), ("_ms", "ms"), ("_s", "s"), ("_ppm", "ppm"),
         ("_mib", "MiB"), ("_bytes", "bytes"), ("_mhz", "MHz"), ("_cycles", "cycles"),
         ("mips", "MIPS"))


class PlotError(Exception):
    """One line, exit status 2."""


def label(col: str) -> str:
    if col in LABELS:
        return LABELS[col]
    for suffix, unit in UNITS:
        if col.endswith(suffix):
            return f"{col} ({unit})"
    return col


def _load(source: str) -> tuple[Path, list[dict], dict]:
    p = Path(source)
    if p.is_dir():
        d, csv_path = p, p / "summary.csv"
    else:
        d, csv_path = p.parent, p
    if not csv_path.is_file():
        raise PlotError(f"{csv_path}: no such summary (run smpxen sweep ... --out DIR first)")
    try:
        rows = read_csv(csv_path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise PlotError(f"{csv_path}: cannot read: {e}") from None
    try:
        info = json.loads((d / "sweep.json").read_text())
    except (OSError, ValueError):
        info = {}
    return d, rows, info


def _good(rows: list[dict], cols: list[str]) -> list[dict]:
    return [r for r in rows if r.get("exit_status") in OK_STATUS
            and all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                    for c in cols)]


def _groups_for(rows: list[dict], x: str, grid: list[str], exclude=()) -> list[str]:
    """Grid columns with several values that x does not determine."""
    out = []
    for c in grid:
        if c == x or c in exclude:
            continue
        if len({repr(r.get(c)) for r in rows}) < 2:
            continue
        per_x: dict[Any, set] = {}
        for r in rows:
            per_x.setdefault(r.get(x), set()).add(repr(r.get(c)))
        if all(len(v) == 1 for v in per_x.values()):
            continue                     # a function of x (e.g. derived from it)
        out.append(c)
    return out


def _group_key(r: dict, groups: list[str]) -> tuple:
    return tuple(r.get(g) for g in groups)


def _short(col: str) -> str:
    """A grid key without its table path: clock.pcpu.0.drift_ppm -> drift_ppm."""
    return col.rsplit(".", 1)[-1] if not col.startswith("env.") else col[4:]


def _group_label(key: tuple, groups: list[str]) -> str:
    return ", ".join(f"{_short(g)}={v}" for g, v in zip(groups, key)) or "all runs"


def _legend(ax, n: int) -> None:
    if n > 3:       # many lines: beside the axes, not over the data
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=7)


def _ticks(ax, xs) -> None:
    """Ticks at the values the sweep ran (PCPU counts, weights), as plain numbers."""
    from matplotlib.ticker import NullFormatter
    vals = sorted(set(xs))
    if len(vals) <= 12:
        ax.set_xticks(vals)
        ax.set_xticklabels([f"{v:g}" for v in vals])
        ax.xaxis.set_minor_formatter(NullFormatter())


def _series(rows, x, y, groups, scale=1.0):
    """{group: [(x, median, min, max, n)]} sorted by x."""
    acc: dict[tuple, dict[Any, list[float]]] = {}
    for r in rows:
        acc.setdefault(_group_key(r, groups), {}).setdefault(r[x], []).append(r[y] * scale)
    out = {}
    for g in sorted(acc, key=lambda k: tuple(str(v) for v in k)):
        pts = []
        for xv in sorted(acc[g]):
            vs = acc[g][xv]
            pts.append((xv, statistics.median(vs), min(vs), max(vs), len(vs)))
        out[g] = pts
    return out


def _errorbar(ax, pts, **kw):
    xs = [p[0] for p in pts]
    med = [p[1] for p in pts]
    lo = [p[1] - p[2] for p in pts]
    hi = [p[3] - p[1] for p in pts]
    return ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, **kw)


def _caption(fig, rows: list[dict], extra: str = "") -> None:
    hosts = sorted({(r.get("host.cpus"), r.get("host.python"), r.get("host.platform"))
                    for r in rows})
    htxt = "; ".join(f"{c} host CPUs, Python {py}, {pl}" for c, py, pl in hosts) or "host unknown"
    loads = sorted(r["host.load1"] for r in rows if isinstance(r.get("host.load1"), (int, float)))
    if loads:
        htxt += (f"; load average at run end: median {statistics.median(loads):.1f}, "
                 f"max {loads[-1]:.1f}")
    text = (f"Host: {htxt}. {len(rows)} runs; points are medians over repeats, bars min-max."
            + (f" {extra}" if extra else ""))
    fig.text(0.01, 0.01, text, fontsize=7, ha="left", va="bottom", wrap=True, color="0.3")


def _finish(fig, ax_list, title: str | None, out: Path) -> Path:
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95 if title else 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return out


def _find_col(rows: list[dict], grid: list[str], suffix: str, what: str) -> str:
    for c in grid:
        if c.endswith(suffix):
            return c
    for c in (rows[0].keys() if rows else ()):
        if c.endswith(suffix):
            return c
    raise PlotError(f"no column ending in {suffix} for the {what} plot's x axis (give --x COL)")


def _check_cols(all_rows, cols):
    present = set().union(*(r.keys() for r in all_rows)) if all_rows else set()
    for c in cols:
        if c not in present:
            known = ", ".join(sorted(k for k in present if not k.startswith("host."))[:40])
            raise PlotError(f"no column {c!r} in the summary (some columns: {known}, ...)")


def draw(kind: str, rows_all: list[dict], grid: list[str], out: Path, *, metric=None, x=None,
         y=None, group=None, title=None, logx=None, logy=None, description="") -> Path:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    if kind not in KINDS:
        raise PlotError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if Path(out).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise PlotError(f"--out {out}: expected a .png, .svg or .pdf file")
    groups_given = [g for g in group.split(",") if g] if group else None
    legend_note = "median, bars min-max over repeats"

    if kind == "fairness":
        x = x or _find_col(rows_all, grid, "mcu_advance", "fairness")
        _check_cols(rows_all, [x])
        shares = sorted({k[len("dom."):-len(".cpu_share")] for r in rows_all for k in r
                         if k.startswith("dom.") and k.endswith(".cpu_share")})
        if not shares:
            raise PlotError("no dom.<name>.cpu_share columns: the runs had no PCPU with "
                            "several domains")
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for i, name in enumerate(shares):
            ycol, ecol = f"dom.{name}.cpu_share", f"dom.{name}.expected_share"
            rows = _good(rows_all, [x, ycol, ecol])
            (pts,) = _series(rows, x, ycol, []).values() or [[]]
            if not pts:
                continue
            line = _errorbar(ax, pts, label=f"{name} measured ({legend_note})")
            (exp,) = _series(rows, x, ecol, []).values()
            ax.plot([p[0] for p in exp], [p[1] for p in exp], "--",
                    color=line[0].get_color(), label=f"{name} expected (1/mcu_advance)")
        ax.set_xlabel(f"{x} (mcu_advance: the inverse weight)")
        ax.set_ylabel("share of the PCPU's CPU time")
        if logx is not False:
            ax.set_xscale("log", base=2)
        _ticks(ax, [r[x] for r in _good(rows_all, [x])])
        _legend(ax, 2 * len(shares))
        ax.grid(alpha=0.3)
        used = [r for r in rows_all if any(isinstance(r.get(f"dom.{n}.cpu_share"), float)
                                           for n in shares)]
        _caption(fig, _good(used, [x]), "Shares of the scheduler's cpu_time_ns.")
        return _finish(fig, [ax], title or description or "BVT CPU shares against weights",
                       Path(out))

    if kind in ("speedup", "latency"):
        x = x or "pcpus"
        ycol = metric or y or ("agg.spin_mips" if kind == "speedup"
                               else "dom.initiator.rtt_median_us")
    elif kind == "skew":
        x = x or _find_col(rows_all, grid, "drift_ppm", "skew")
        ycol = metric or y or "time_skew.max_pairwise_ns"
    else:
        if not (x and (y or metric)):
            raise PlotError("--kind xy needs --x COL and --y COL")
        ycol = y or metric
    _check_cols(rows_all, [x, ycol])
    rows = _good(rows_all, [x, ycol])
    if not rows:
        raise PlotError(f"no run that ended normally has numbers in {x} and {ycol}")
    groups = groups_given if groups_given is not None else _groups_for(rows, x, grid)
    _check_cols(rows_all, groups)

    if kind == "speedup":
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
        series = _series(rows, x, ycol, groups)
        xmax = 0
        x0_all = None
        for g, pts in series.items():
            x0, base = pts[0][0], pts[0][1]
            x0_all = x0 if x0_all is None else min(x0_all, x0)
            sp = [(p[0], p[1] / base, p[2] / base, p[3] / base, p[4]) for p in pts]
            line = _errorbar(ax, sp, label=f"{_group_label(g, groups)} ({legend_note})")
            eff = [(p[0], p[1] / (p[0] / x0), p[2] / (p[0] / x0), p[3] / (p[0] / x0), p[4])
                   for p in sp]
            _errorbar(ax2, eff, color=line[0].get_color())
            xmax = max(xmax, pts[-1][0])
        ideal = sorted({r[x] for r in rows})
        ax.plot(ideal, [v / x0_all for v in ideal], "k--", lw=1, label="ideal (linear)")
        ax2.axhline(1.0, color="k", ls="--", lw=1)
        host = {r.get("host.cpus") for r in rows if r.get("host.cpus")}
        for a in (ax, ax2):
            for h in host:
                if h <= xmax:
                    a.axvline(h, color="0.5", ls=":", lw=1)
            a.set_xlabel(label(x))
            a.grid(alpha=0.3)
            if logx or (logx is None and xmax / max(1, x0_all) >= 16):
                a.set_xscale("log", base=2)
                if a is ax:         # log-log: the ideal line stays a straight diagonal
                    from matplotlib.ticker import FuncFormatter
                    a.set_yscale("log", base=2)
                    a.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            _ticks(a, [r[x] for r in rows])
        ax.set_ylabel(f"speedup over {x0_all} PCPU{'s' if x0_all != 1 else ''}")
        ax2.set_ylabel("efficiency (speedup / ideal)")
        ax2.set_ylim(bottom=0)
        _legend(ax, len(series) + 1)
        extra = f"Throughput: {label(ycol)}." + (
            f" Dotted line: the host's CPU count ({', '.join(map(str, sorted(host)))})."
            if host else "")
        _caption(fig, rows, extra)
        return _finish(fig, [ax, ax2], title or description or "Scaling", Path(out))

    fig, ax = plt.subplots(figsize=(8.4 if len(groups) else 6.4, 4.4))
    scale, ylab = 1.0, label(ycol)
    if kind == "skew" and ycol.endswith("_ns"):
        scale, ylab = 1e-3, label(ycol).replace("(ns)", "") + " (us)"
        if "(" not in ylab:
            ylab = ylab.strip() + " (us)"
    series = _series(rows, x, ycol, groups, scale)
    for g, pts in series.items():
        _errorbar(ax, pts, label=_group_label(g, groups))
    ax.plot([], [], " ", label=legend_note)
    ax.set_xlabel(label(x))
    ax.set_ylabel(ylab)
    xs = [r[x] for r in rows]
    if logx or (logx is None and kind == "latency" and min(xs) > 0 and max(xs) / min(xs) >= 16):
        ax.set_xscale("log", base=2)
    _ticks(ax, xs)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    _legend(ax, len(series) + 1)
    _caption(fig, rows)
    return _finish(fig, [ax], title or description or f"{label(ycol)} against {label(x)}",
                   Path(out))


def plot_main(source: str, *, kind=None, out=None, metric=None, x=None, y=None, group=None,
              title=None, logx=None, logy=None) -> list[Path]:
    d, rows, info = _load(source)
    grid = list(info.get("columns") or [])
    if kind is None:
        specs = info.get("plots") or []
        if not specs:
            raise PlotError(f"{d}: no --kind given and its sweep lists no plots")
        if out is not None and len(specs) > 1:
            raise PlotError("--out names one file; the sweep lists several plots (give --kind)")
    else:
        specs = [{"kind": kind}]
    paths = []
    for spec in specs:
        spec = dict(spec)
        for k, v in (("metric", metric), ("x", x), ("y", y), ("group", group), ("title", title),
                     ("logx", logx), ("logy", logy)):
            if v is not None:
                spec[k] = v
        target = Path(out) if out else d / (spec.pop("out", None) or f"{spec['kind']}.png")
        spec.pop("out", None)
        k = spec.pop("kind")
        paths.append(draw(k, rows, grid, target, description=info.get("description", ""), **spec))
    return paths
