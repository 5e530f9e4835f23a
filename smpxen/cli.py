"""The `smpxen` command line."""
from __future__ import annotations

import sys

import click

from smpxen import __version__
from smpxen.config.schema import MAX_CPUS


def _default_config() -> str:
    from importlib import resources
    return str(resources.files("smpxen.configs") / "default.toml")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smpxen")
def main():
    """smpxen: a simulated x86-32 SMP machine running a Xen 2.0-style hypervisor.

    Each physical CPU is an OS process running a Unicorn core over shared machine
    RAM; the PCPUs talk over ZeroMQ. Guests see the Xen 2.0 x86_32 interface."""


@main.command()
@click.option("--cpus", type=click.IntRange(1, MAX_CPUS), default=None,
              help="Number of physical CPUs (overrides the config's machine.cpus).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Machine config (TOML). Default: the bundled configs/default.toml "
                   "(Domain-0 plus one guest per CPU).")
@click.option("--report", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write a JSON summary of the run (per PCPU and per domain) to this file.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop the machine after this many seconds (exit status 3).")
@click.option("--quiet", "-q", is_flag=True, help="Do not print guest console output.")
@click.option("--probe-time-ms", type=click.FloatRange(min=1), default=None,
              help="Sample every PCPU's system time this often and report the cross-CPU "
                   "skew (report key time_skew).")
@click.option("--migrate", "migrate", multiple=True, metavar="DOMAIN:MS",
              help="Move DOMAIN to the next PCPU every MS milliseconds (repeatable).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change a config key before the config is checked (repeatable): tables by "
                   "dotted path, arrays of tables by index, e.g. --set machine.time_model=percpu "
                   "--set domain.0.cmdline=200000, and a new clock.pcpu entry with its index: "
                   "--set clock.pcpu.0.index=1 --set clock.pcpu.0.drift_ppm=50. VALUE is a "
                   "TOML value, or else a plain string.")
@click.option("--input", "console_input", is_flag=True,
              help="Send what arrives on standard input (on a terminal, each line as you type "
                   "it) to Domain-0's console: Domain-0 gets VIRQ_CONSOLE and reads it with "
                   "console_io(CONSOLEIO_read), as Xen 2.0's serial line. Off by default: "
                   "smpxen up never reads its input otherwise.")
@click.option("--status", "status_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Print a status line (elapsed time, domains still running) on stderr this "
                   "often; 0 turns it off. Default: every 10 s when stderr is a terminal.")
@click.option("--trace", "trace_path", default=None, metavar="FILE",
              help="Record Xen trace buffers for the whole run into FILE (xentrace's binary "
                   "format; read it with smpxen xentrace-format). Gives each PCPU a buffer of "
                   "machine.trace_pages pages (256, 1 MiB, if the config has none).")
@click.option("--trace-mask", default=None, metavar="MASK",
              help="Xen's trace event mask: a number (0x00020000) or classes joined by commas "
                   "(sched,ipi,hcall,evtchn,mm,migrate,time,dom0op,gen; all). Default: all.")
def up(cpus, config_path, report, timeout, quiet, probe_time_ms, migrate, sets, console_input, status_s,
       trace_path, trace_mask):
    """Boot a machine and run its domains until they have all shut down.

    \b
    Exit status: 0 every domain shut down; 1 a domain crashed; 2 bad config or
    kernel; 3 --timeout reached; 4 a PCPU process failed; 130/143 interrupted
    by SIGINT/SIGTERM."""
    from smpxen.config import ConfigError, load_config
    from smpxen.guests.assemble import bundled_guest_names
    from smpxen.machine.machine import Machine, MachineError, RunOptions
    from smpxen.domain.builder import DOMAIN_EXTRA_FRAMES
    from smpxen.shm.layout import MAX_DOMAINS, Layout
    from smpxen.xen.arch_x86_32 import PAGE_SIZE
    from smpxen.trace.cli import trace_options
    path = config_path or _default_config()
    sets, trace_pages = trace_options(sets, trace_path, trace_mask)   # a bad mask: exit 2

    def load(overrides):
        return load_config(path, cpus=cpus, bundled_guests=bundled_guest_names(),
                           reserve_bytes=Layout.reserve_bytes,
                           domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * PAGE_SIZE,
                           max_domains=MAX_DOMAINS, overrides=overrides)
    try:
        cfg = load(sets)
        if trace_pages and not cfg.trace_pages:        # --trace brings buffers
            cfg = load(sets + trace_pages)
    except ConfigError as e:
        from smpxen.config.overrides import set_origin
        origin = set_origin(e.key, sets)
        click.echo(f"smpxen: {e}" + (f" (from --set {origin})" if origin else ""), err=True)
        sys.exit(2)
    moves = []
    for item in migrate:
        name, _, ms = item.rpartition(":")
        try:
            moves.append((name, float(ms)))
        except ValueError:
            name = ""
        if not name or moves[-1][1] <= 0:
            click.echo(f"smpxen: --migrate {item!r}: expected DOMAIN:MS with MS > 0", err=True)
            sys.exit(2)
    if status_s is None:
        status_s = 10.0 if sys.stderr.isatty() else 0.0
    if trace_mask is not None and not cfg.trace_pages:
        click.echo("smpxen: --trace-mask: the machine has no trace buffers (add --trace FILE "
                   "or set machine.trace_pages)", err=True)
        sys.exit(2)
    opts = RunOptions(report=report, timeout=timeout, quiet=quiet, probe_time_ms=probe_time_ms,
                      console_input=console_input,
                      migrate=moves, status_s=status_s, trace=trace_path)
    try:
        status = Machine(cfg, opts).run()
    except MachineError as e:
        click.echo(f"smpxen: {e}", err=True)
        sys.exit(2)
    sys.exit(status)


@main.command()
@click.option("--quick", is_flag=True, help="Smaller workloads (about 5x faster, noisier).")
@click.option("--group", "groups", multiple=True,
              help="Run only this benchmark group (repeatable). Default: all.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON to this file.")
def bench(quick, groups, out):
    """Measure smpxen and print one JSON object (progress goes to stderr).

    Every figure is compared with a baseline measured in the same run (raw
    Unicorn running the same guest code), because shared machines are noisy.
    The README documents every key."""
    from smpxen.bench.cli import GROUPS, run_bench
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise click.BadParameter(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}",
                                 param_hint="--group")
    run_bench(groups or list(GROUPS), quick, out)


class _XmCommand(click.Command):
    """`smpxen xm --help` lists the verbs (smpxen/control/verbs.py)."""

    def format_epilog(self, ctx, formatter):
        from smpxen.control.xm import usage
        with formatter.section("Verbs"):
            formatter.write_dl(usage())


@main.command(cls=_XmCommand, context_settings={"ignore_unknown_options": True,
                                                "allow_interspersed_args": False})
@click.option("--machine", default=None, metavar="TAG",
              help="The machine to talk to: the tag `smpxen up` printed, its process id, or "
                   "its control endpoint ipc://@smpxen-TAG-control. Default: the only one running.")
@click.argument("verb")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def xm(machine, verb, args):
    """Control a running machine through Domain-0 (Xen 2.0's xm): list, info,
    create, destroy, pause, unpause, pincpu, bvt, bvt_ctxallow, mem-max, dmesg, ...

    \b
    Exit status: 0 done; 1 the verb failed, or no machine (one line on stderr)."""
    from smpxen.control.xm import main as xm_main
    sys.exit(xm_main(machine, verb, list(args)))


# Experiments (smpxen/sweep/): `smpxen sweep` and `smpxen plot`.
from smpxen.sweep.cli import plot, sweep  # noqa: E402
main.add_command(sweep)
main.add_command(plot)

# Trace buffers (smpxen/trace/): xentrace, xentrace-format, xentrace-cpusplit, trace-export, trace-skew.
from smpxen.trace.cli import COMMANDS as _TRACE_COMMANDS  # noqa: E402
for _command in _TRACE_COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
