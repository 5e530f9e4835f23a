"""The machine configuration's schema: the keys a TOML file may hold, their
defaults and limits (each stated with its reason where it is checked, in
smpxen/config/loading.py), the error every problem raises, and the resolved
config the machine is built from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


MIB = 1 << 20
MIN_CPUS, MAX_CPUS = 1, 128
# Up to 4 GiB: a non-PAE page-table entry holds a 20-bit frame number.
MACHINE_MEMORY_MIB = (8, 4096)
DOMAIN_MEMORY_MIB = (1, 1024)
# A sanity range, not a failure point: machines with +-10 % run (xen2 shows the
# skew, percpu corrects it); real crystals stay within about +-100 ppm.
MAX_DRIFT_PPM = 1000.0
# The cycle counter's frequency. Below: guests derive cpu_khz = cpu_freq / 1000 and
# divide (1000 << 32) by it, which faults (#DE) unless cpu_khz > 1000; what they
# get is the calibrated frequency, not the configured one, hence the margin.
# Above: XenLinux-style guests extrapolate time from the low 32 bits of the
# counter as a signed delta, so 2^31 cycles must outlast the gaps between the
# hypervisor's time updates (a 10 ms tick, later when the host is busy): 20 GHz
# gives 107 ms (at 100 GHz, 21 ms, guests saw time go back).
MIN_FREQ_MHZ, MAX_FREQ_MHZ = 2.0, 20_000.0
FREQ_WHY = ("MHz; guests divide by cpu_khz, which must exceed 1000, and extrapolate time "
            "over at most 2^31 cycles, 107 ms at 20 GHz")
# The counter is 64 bits wide (it wraps there; the time code handles the wrap).
MAX_OFFSET_CYCLES = (1 << 64) - 1
# start_info.cmd_line is u8[MAX_CMDLINE] (xen.h), NUL-terminated: 255 usable bytes.
MAX_CMDLINE = 256
# Largest ordinary domain id: DOMID_FIRST_RESERVED (0x7FF0) - 1.  Used to bound
# how long "{domid}" can get when the cmdline template is rendered.
MAX_DOMID = 0x7FF0 - 1

TIME_MODELS = ("xen2", "percpu")
CONSOLE_IO_MODES = ("all", "dom0")
SCHEDULERS = ("bvt",)

CMDLINE_PLACEHOLDERS = ("domid", "name", "index")
NAME_PLACEHOLDERS = ("index",)

DEFAULTS: dict[str, Any] = {
    "machine": {
        "cpus": 4,
        "memory_mib": "auto",
        "time_model": "xen2",
        "console_io": "all",
        "scheduler": "bvt",
        "trace_pages": 0,
        "trace_mask": "all",
    },
    "clock": {"freq_mhz": 2000.0, "offset_cycles": 0, "drift_ppm": 0.0},
    "domain": {
        "name": "guest{index}",
        "memory_mib": 4,
        "cpu": "auto",
        "count": 1,
        "cmdline": "",
    },
    "dom0": {"name": "dom0", "memory_mib": 4, "cpu": "auto", "cmdline": ""},
}

TOP_KEYS = ("machine", "clock", "dom0", "domain")
MACHINE_KEYS = ("name", "cpus", "memory_mib", "time_model", "console_io", "scheduler",
                "trace_pages", "trace_mask")
# Trace buffers (Xen's tbuf_size): pages per PCPU, 0 for none. 4096 pages (16 MiB)
# keeps a buffer's size in bytes within DOM0_GETTBUFS's 32-bit field with room to
# spare; --trace without buffers gets TRACE_PAGES_FOR_TRACE.
TRACE_PAGES = (0, 4096)
TRACE_PAGES_FOR_TRACE = 256
CLOCK_KEYS = ("freq_mhz", "offset_cycles", "drift_ppm", "pcpu")
PCPU_CLOCK_KEYS = ("index", "freq_mhz", "offset_cycles", "drift_ppm")
DOMAIN_KEYS = ("name", "kernel", "memory_mib", "cpu", "count", "cmdline", "bvt")
DOM0_KEYS = ("name", "kernel", "memory_mib", "cpu", "cmdline", "bvt")
# Per-domain BVT parameters (as DOM0_ADJUSTDOM sets them): mcu_advance is the
# inverse weight; warpback enables warping by warp_value for at most warpl_ms,
# then not again before warpu_ms.
BVT_KEYS = ("mcu_advance", "warpback", "warp_value", "warpl_ms", "warpu_ms")


# --------------------------------------------------------------------------- #
# Errors


class ConfigError(ValueError):
    """A configuration problem.  ``str()`` is one line: ``<file>: <key>: <reason>``.

    Attributes: ``file`` (as given to load_config), ``key`` (dotted key path,
    or a ``line L, column C`` location for TOML syntax errors; None for errors
    about the file itself) and ``reason``.
    """

    def __init__(self, file: str, key: str | None, reason: str):
        self.file = str(file)
        self.key = key
        self.reason = reason
        parts = [self.file] + ([key] if key else []) + [reason]
        msg = ": ".join(parts)
        # Guarantee one line whatever a user put in a name or path.
        msg = msg.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(msg)

    def __reduce__(self):  # picklable across processes
        return (type(self), (self.file, self.key, self.reason))


# --------------------------------------------------------------------------- #
# Result dataclasses


@dataclass(frozen=True)
class ClockSpec:
    """One PCPU's cycle counter: counter(t) starts at offset_cycles at machine
    start and ticks at freq_hz scaled by (1 + drift_ppm / 1e6)."""

    freq_hz: float
    offset_cycles: int
    drift_ppm: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "freq_hz": self.freq_hz,
            "offset_cycles": self.offset_cycles,
            "drift_ppm": self.drift_ppm,
        }


@dataclass(frozen=True)
class DomainSpec:
    """One domain to build.  ``kernel`` is a bundled guest name (str) or a
    resolved pathlib.Path to an ELF file.  ``cpu`` None means "auto" (the
    builder picks the least-loaded PCPU).  ``cmdline_template`` may contain
    {domid}, {name} and {index}; render it with render_cmdline(domid)."""

    name: str
    kernel: str | Path
    memory_bytes: int
    cpu: int | None
    cmdline_template: str
    privileged: bool
    index: int
    bvt: dict = field(default_factory=dict)

    @property
    def bundled(self) -> bool:
        return not isinstance(self.kernel, Path)

    @property
    def memory_mib(self) -> int:
        return self.memory_bytes // MIB

    def render_cmdline(self, domid: int) -> str:
        """The command line with {domid}, {name} and {index} substituted
        ('{{' and '}}' stand for literal braces)."""
        return self.cmdline_template.format_map(
            {"domid": domid, "name": self.name, "index": self.index}
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kernel": str(self.kernel),
            "kernel_kind": "bundled" if self.bundled else "elf",
            "memory_bytes": self.memory_bytes,
            "cpu": self.cpu,
            "cmdline_template": self.cmdline_template,
            "privileged": self.privileged,
            "index": self.index,
            "bvt": dict(self.bvt),
        }


@dataclass(frozen=True)
class MachineConfig:
    path: Path                  # the config file, resolved
    name: str
    cpus: int
    memory_bytes: int
    time_model: str             # "xen2" | "percpu"
    console_io: str             # "all" | "dom0"
    scheduler: str              # "bvt"
    clocks: list[ClockSpec]     # one per PCPU, index = PCPU number
    dom0: DomainSpec | None
    domains: list[DomainSpec]   # unprivileged, count expanded, in file order
    raw: dict = field(repr=False, compare=False)  # the parsed TOML, as written
    trace_pages: int = 0        # trace buffer pages per PCPU (0: no buffers)
    trace_mask: int = 0xFFFF0000  # Xen's event mask (smpxen/xen/trace.py)

    @property
    def all_domains(self) -> list[DomainSpec]:
        """dom0 (if any) followed by the unprivileged domains."""
        return ([self.dom0] if self.dom0 is not None else []) + list(self.domains)

    @property
    def memory_mib(self) -> int:
        return self.memory_bytes // MIB

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of the effective configuration (no ``raw``)."""
        return {
            "path": str(self.path),
            "name": self.name,
            "cpus": self.cpus,
            "memory_bytes": self.memory_bytes,
            "time_model": self.time_model,
            "console_io": self.console_io,
            "scheduler": self.scheduler,
            "trace_pages": self.trace_pages,
            "trace_mask": self.trace_mask,
            "clocks": [c.to_dict() for c in self.clocks],
            "dom0": self.dom0.to_dict() if self.dom0 is not None else None,
            "domains": [d.to_dict() for d in self.domains],
        }
