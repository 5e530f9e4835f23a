"""`smpxen sweep` and `smpxen plot` (registered in smpxen/cli.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("up_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- UP_ARGS...]")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Results directory (created; a rerun skips the runs already done there).")
@click.option("--cpus", default=None, metavar="N,N,...",
              help="PCPU counts to run (an axis on machine.cpus).")
@click.option("--set", "sets", multiple=True, metavar="KEY=V1,V2,...",
              help="A config key and its values (an axis; repeatable). Values are TOML or "
                   "plain strings; quote one that holds a comma: 'domain.0.cmdline=\"a,b\",c'.")
@click.option("--env", "envs", multiple=True, metavar="NAME=V1,V2,...",
              help="An environment variable of the machines and its values (an axis), e.g. "
                   "SMPXEN_NO_FLUSH_CLOCK=0,1.")
@click.option("--derive", "derives", multiple=True, metavar="KEY=TEMPLATE",
              help="A key computed from the grid, e.g. 'domain.1.cpu={machine.cpus}-1' "
                   "(arithmetic is evaluated).")
@click.option("--repeat", type=click.IntRange(min=1), default=None,
              help="Runs per point (default 1, or the experiment file's).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Each run's smpxen up --timeout (exit 3); the sweep kills a "
                                      "run still alive 60 s later.")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local",
              help="local: one point after another on this host (default); dask: the points "
                   "spread over a dask.distributed cluster (needs smpxen[dask] and --scheduler).")
@click.option("--scheduler", default=None, metavar="ADDR",
              help="The dask scheduler, e.g. tcp://10.0.0.5:8786.")
@click.option("--dask-resource", "resource", default=None, metavar="NAME",
              help="Request one unit of this worker resource per task (workers started with "
                   "--resources NAME=1); without it, start workers with --nthreads 1.")
def sweep(config, up_args, out, cpus, sets, envs, derives, repeat, timeout, executor, scheduler,
          resource):
    """Run a machine config (or an experiment file) over a grid of config values.

    \b
    CONFIG is a machine config (TOML) or an experiment file (a [sweep] table,
    see experiments/). Every combination of the axes is run REPEAT times:
      smpxen sweep configs/default.toml --out results/x --cpus 1,2,4 \\
          --set machine.time_model=xen2,percpu --repeat 3 -- --quiet
    Arguments after -- go to every `smpxen up`. Writes DIR/runs/<point>/
    (report.json, console.txt, stderr.txt, command.txt, run.json) and
    DIR/summary.csv. Exit status: 0 every run ended with status 0 or 3
    (timeout); 1 some run failed; 2 bad sweep (nothing ran); 130/143
    interrupted (finished runs are kept; the same command goes on)."""
    from smpxen.config.overrides import split_assignment
    from smpxen.sweep.grid import (ENV_PREFIX, Sweep, SweepError, is_spec, load_spec,
                                   parse_axis)
    from smpxen.sweep.main import run_sweep
    try:
        path = Path(config)
        if not path.is_file():
            raise SweepError(f"{config}: no such config or experiment file")
        if is_spec(path):
            sw = load_spec(path)
        else:
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise SweepError(f"{config}: cannot read: {e}") from None
            sw = Sweep(config_path=path.resolve(), config_text=text)
        if cpus:
            sw.set_axis(parse_axis(f"machine.cpus={cpus}", "--cpus"))
        for item in sets:
            sw.set_axis(parse_axis(item))
        for item in envs:
            axis = parse_axis(item, "--env")
            axis.key = ENV_PREFIX + axis.key
            sw.set_axis(axis)
        for item in derives:
            try:
                key, template = split_assignment(item)
            except ValueError as e:
                raise SweepError(f"--derive: {e}") from None
            sw.derived[key] = template
        if repeat is not None:
            sw.repeat = repeat
        if timeout is not None:
            sw.timeout = timeout
        sw.up_args = list(sw.up_args) + list(up_args)
        status = run_sweep(sw, Path(out), executor, scheduler, resource)
    except SweepError as e:
        click.echo(f"smpxen sweep: {e}", err=True)
        sys.exit(2)
    sys.exit(status)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(exists=False))
@click.option("--kind", default=None,
              help="speedup (with the efficiency beside it) | latency | skew | fairness | xy. Default: "
                   "the plots the experiment file lists (written into the results directory).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Figure file (.png or .svg). Default: <results dir>/<kind>.png.")
@click.option("--metric", default=None, metavar="COL",
              help="The y column of speedup/latency/skew/fairness (each has a default).")
@click.option("--x", "x", default=None, metavar="COL", help="x column (xy; overrides the kind's).")
@click.option("--y", "y", default=None, metavar="COL", help="y column (xy).")
@click.option("--group", default=None, metavar="COL[,COL]",
              help="One line per value of these columns.")
@click.option("--title", default=None)
@click.option("--logx", is_flag=True, default=None, help="Logarithmic x axis.")
@click.option("--logy", is_flag=True, default=None, help="Logarithmic y axis.")
def plot(source, kind, out, metric, x, y, group, title, logx, logy):
    """Draw a sweep's summary: SOURCE is DIR/summary.csv or DIR.

    \b
    Each point is the median over the repeats with an error bar from the
    minimum to the maximum (the legend says so). Needs matplotlib
    (pip install 'smpxen[plot]')."""
    from smpxen.sweep.plot import PlotError, plot_main
    try:
        for path in plot_main(source, kind=kind, out=out, metric=metric, x=x, y=y, group=group,
                              title=title, logx=logx, logy=logy):
            click.echo(str(path))
    except PlotError as e:
        click.echo(f"smpxen plot: {e}", err=True)
        sys.exit(2)
