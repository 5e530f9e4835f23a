"""Machine configuration: one TOML file describes the machine and what runs on it.

    cfg = load_config("configs/default.toml", cpus=4,
                      bundled_guests={"hello", "spin"},
                      reserve_bytes=Layout.reserve_bytes,
                      domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * PAGE_SIZE)

Every key is checked; any problem raises ConfigError whose str() is one line,
``<file>: <key path>: <reason>`` (e.g. ``configs/x.toml: domain[1].cpu: ...``).
Key paths name the entry as written in the file: ``domain[1]`` is the second
``[[domain]]`` entry, before ``count`` expansion.

The schema is documented in configs/default.toml; in short:

    [machine]      name, cpus, memory_mib, time_model, console_io, scheduler
    [clock]        freq_mhz, offset_cycles, drift_ppm       (every PCPU)
    [[clock.pcpu]] index + any of the three above           (one PCPU)
    [dom0]         name, kernel, memory_mib, cpu, cmdline, bvt   (privileged, optional)
    [[domain]]     name, kernel, memory_mib, cpu, count, cmdline, bvt

A config that loads is one the machine can build and run: the ranges are its
real limits, stated with their reason where they are checked (the domain table,
the free pool after the hypervisor's reservation and each domain's extra frames,
the counter range the time code and guests handle, 4 GiB of 32-bit physical
address space); per-domain memory and drift have sanity ranges. Kernel images
are checked by the machine (smpxen.machine.images) before it creates anything.

Only the stdlib is used (tomllib, dataclasses), plus the size of the shared
domain table (smpxen.shm.layout.MAX_DOMAINS).
"""
from __future__ import annotations

import math
import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from smpxen.shm.layout import MAX_DOMAINS

__all__ = [
    "load_config",
    "ConfigError",
    "MachineConfig",
    "ClockSpec",
    "DomainSpec",
    "MIB",
    "MIN_CPUS",
    "MAX_CPUS",
    "MAX_CMDLINE",
    "MAX_DOMID",
    "MAX_DOMAINS",
    "MIN_FREQ_MHZ",
    "MAX_FREQ_MHZ",
    "MAX_OFFSET_CYCLES",
    "TIME_MODELS",
    "CONSOLE_IO_MODES",
    "SCHEDULERS",
    "CMDLINE_PLACEHOLDERS",
    "NAME_PLACEHOLDERS",
]

MIB = 1 << 20
MIN_CPUS, MAX_CPUS = 1, 64
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
        "memory_mib": 64,
        "time_model": "xen2",
        "console_io": "all",
        "scheduler": "bvt",
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
MACHINE_KEYS = ("name", "cpus", "memory_mib", "time_model", "console_io", "scheduler")
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
            "clocks": [c.to_dict() for c in self.clocks],
            "dom0": self.dom0.to_dict() if self.dom0 is not None else None,
            "domains": [d.to_dict() for d in self.domains],
        }


# --------------------------------------------------------------------------- #
# Value checking helpers

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key_name(k: str) -> str:
    """A key as it would be written in TOML (quoted unless it is a bare key)."""
    if _BARE_KEY.match(k):
        return k
    return '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(path: str, k: str) -> str:
    return f"{path}.{_key_name(k)}" if path else _key_name(k)


def _show(value: Any) -> str:
    """`got ...` text: repr (truncated) and TOML-ish type name."""
    names = {dict: "table", list: "array", str: "str", int: "int", float: "float", bool: "bool"}
    tname = names.get(type(value), type(value).__name__)
    if isinstance(value, bool):
        r = "true" if value else "false"
    else:
        r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{r} ({tname})"


def _short(value: Any) -> str:
    """A number or string for a message, truncated (TOML integers can have thousands
    of digits)."""
    r = str(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _fmt_size(nbytes: int) -> str:
    return f"{nbytes >> 10} KiB" if nbytes < MIB and nbytes % 1024 == 0 else _fmt_mib(nbytes)


def _fmt_mib(nbytes: int) -> str:
    whole, rest = divmod(nbytes, MIB)
    if whole >= 10**15:      # a count of thousands of digits: too big for float or str()
        return "more than 10^15 MiB"
    return f"{whole} MiB" if rest == 0 else f"{nbytes / MIB:.2f} MiB"


class _Checker:
    """Value checks that raise ConfigError naming the file and key path."""

    def __init__(self, file: str):
        self.file = file

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(self.file, key, reason)

    def table(self, value: Any, key: str, known: Iterable[str]) -> dict:
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {_show(value)}")
        known = tuple(known)
        for k in value:
            if k not in known:
                raise self.error(_join(key, k), f"unknown key (known: {', '.join(known)})")
        return value

    def integer(self, value: Any, key: str, lo: int | None = None, hi: int | None = None,
                why: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_show(value)}")
        self._range(value, key, lo, hi, why)
        return value

    def number(self, value: Any, key: str, lo: float | None = None, hi: float | None = None,
               *, positive: bool = False, why: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {_show(value)}")
        if positive and not value > 0:
            raise self.error(key, f"must be greater than 0, got {_short(value)}")
        self._range(value, key, lo, hi, why)
        return float(value)

    def _range(self, value, key, lo, hi, why: str = "") -> None:
        why = f" ({why})" if why else ""
        if lo is not None and hi is not None and not lo <= value <= hi:
            raise self.error(key, f"must be between {lo} and {hi}, got {_short(value)}{why}")
        if lo is not None and value < lo:
            raise self.error(key, f"must be at least {lo}, got {_short(value)}{why}")
        if hi is not None and value > hi:
            raise self.error(key, f"must be at most {hi}, got {_short(value)}{why}")

    def string(self, value: Any, key: str, *, nonempty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_show(value)}")
        if nonempty and not value:
            raise self.error(key, "must not be empty")
        return value

    def choice(self, value: Any, key: str, choices: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in choices:
            opts = ", ".join(repr(c) for c in choices)
            raise self.error(key, f"expected one of {opts}, got {_show(value)}")
        return value

    def template(self, value: str, key: str, allowed: tuple[str, ...]) -> list[str]:
        """Check a str.format template uses only the given bare placeholders;
        returns the placeholder names used."""
        allowed_txt = ", ".join("{" + a + "}" for a in allowed)
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as e:
            raise self.error(key, f"bad placeholder syntax ({e}); "
                                  f"allowed: {allowed_txt}, write {{{{ and }}}} for literal braces")
        used = []
        for _lit, fname, spec, conv in parsed:
            if fname is None:
                continue
            shown = "{" + fname + ("!" + conv if conv else "") + (":" + spec if spec else "") + "}"
            if fname not in allowed:
                raise self.error(key, f"unknown placeholder {shown} (allowed: {allowed_txt}; "
                                      f"write {{{{ and }}}} for literal braces)")
            if spec or conv:
                raise self.error(key, f"placeholder {shown} may not have a format spec or "
                                      f"conversion (allowed: {allowed_txt})")
            used.append(fname)
        return used


# --------------------------------------------------------------------------- #
# Loader


def load_config(
    path: str | os.PathLike,
    *,
    cpus: int | None = None,
    bundled_guests: Iterable[str] = frozenset(),
    reserve_bytes: Callable[[int, int], int] | None = None,
    domain_overhead_bytes: int = 0,
    max_domains: int = MAX_DOMAINS,
) -> MachineConfig:
    """Load and validate a machine config.

    cpus           -- the --cpus argument; overrides machine.cpus when not None.
    bundled_guests -- names a bare ``kernel = "name"`` may refer to.
    reserve_bytes  -- callable (cpus, memory_bytes) -> bytes the hypervisor keeps
                      for itself; domain memory must fit in the rest.  None: 0.
    domain_overhead_bytes -- what building a domain takes from the free pool
                      besides its memory (smpxen.domain.builder.DOMAIN_EXTRA_FRAMES).
    max_domains    -- slots in the hypervisor's domain table, dom0 included.
    """
    file = str(path)
    ck = _Checker(file)
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ck.error(None, "file not found") from None
    except IsADirectoryError:
        raise ck.error(None, "is a directory, not a config file") from None
    except OSError as e:
        raise ck.error(None, f"cannot read: {e.strerror or e}") from None
    except ValueError as e:          # e.g. a NUL in the path
        raise ck.error(None, f"cannot read: {e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ck.error(None, f"not valid UTF-8 (byte offset {e.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _toml_error(ck, str(e)) from None
    except RecursionError:           # tomllib recurses once per nesting level
        raise ck.error(None, "TOML syntax error: arrays or tables nested too deeply") from None
    except ValueError as e:          # int() refuses integers of more than 4300 digits
        reason = ("an integer has more than 4300 digits" if "digits" in str(e)
                  else f"TOML value error: {e}")
        raise ck.error(None, reason) from None

    base_dir = p.resolve().parent
    bundled = frozenset(bundled_guests)

    ck.table(raw, "", TOP_KEYS)

    # ---- [machine]
    m = ck.table(raw.get("machine", {}), "machine", MACHINE_KEYS)
    md = DEFAULTS["machine"]
    name = ck.string(m.get("name", p.stem), "machine.name", nonempty=True)
    file_cpus = ck.integer(m.get("cpus", md["cpus"]), "machine.cpus", MIN_CPUS, MAX_CPUS)
    if cpus is not None:
        if isinstance(cpus, bool) or not isinstance(cpus, int) or not MIN_CPUS <= cpus <= MAX_CPUS:
            raise ck.error("machine.cpus",
                           f"--cpus override must be an integer between {MIN_CPUS} and "
                           f"{MAX_CPUS}, got {cpus!r}")
        ncpus = cpus
    else:
        ncpus = file_cpus
    overridden = cpus is not None and "cpus" in m and cpus != file_cpus
    cpus_note = (f"the machine has {ncpus} CPU{'s' if ncpus != 1 else ''}"
                 + (f" (--cpus {ncpus} overrides machine.cpus = {file_cpus})" if overridden else ""))

    memory_mib = ck.integer(m.get("memory_mib", md["memory_mib"]), "machine.memory_mib",
                            *MACHINE_MEMORY_MIB)
    memory_bytes = memory_mib * MIB
    time_model = ck.choice(m.get("time_model", md["time_model"]), "machine.time_model", TIME_MODELS)
    console_io = ck.choice(m.get("console_io", md["console_io"]), "machine.console_io",
                           CONSOLE_IO_MODES)
    scheduler = ck.choice(m.get("scheduler", md["scheduler"]), "machine.scheduler", SCHEDULERS)

    # ---- [clock] and [[clock.pcpu]]
    clocks = _load_clocks(ck, raw.get("clock", {}), ncpus, cpus_note)

    # ---- [dom0] and [[domain]]
    def cpu_index(value: Any, key: str) -> int | None:
        if value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ck.error(key, f"expected a PCPU index or \"auto\", got {_show(value)}")
        if value < 0:
            raise ck.error(key, f"PCPU index must be at least 0, got {_short(value)}")
        if value >= ncpus:
            raise ck.error(key, f"PCPU {_short(value)} out of range: {cpus_note}")
        return value

    def kernel_of(value: Any, key: str) -> str | Path:
        k = ck.string(value, key, nonempty=True)
        if "/" in k or k.endswith(".elf"):
            try:
                kp = Path(k).expanduser()
                if not kp.is_absolute():
                    kp = base_dir / kp
                kp = kp.resolve()
                exists, regular = kp.exists(), kp.is_file()
            except RuntimeError as e:    # ~user that does not exist, a symlink loop
                raise ck.error(key, f"bad path {_short(k)!r}: {e}") from None
            except (OSError, ValueError) as e:   # name too long, no permission, a NUL
                raise ck.error(key, f"bad path {_short(k)!r}: "
                                    f"{getattr(e, 'strerror', None) or e}") from None
            if not exists:
                raise ck.error(key, f"no such file: {kp}")
            if not regular:
                raise ck.error(key, f"not a regular file: {kp}")
            return kp
        if k not in bundled:
            listing = ", ".join(sorted(bundled)) if bundled else "none"
            raise ck.error(key, f"unknown bundled guest {k!r} (bundled: {listing}; "
                                f"a path to an ELF file must contain '/' or end in .elf)")
        return k

    def name_template(value: Any, key: str) -> str:
        n = ck.string(value, key, nonempty=True)
        ck.template(n, key, NAME_PLACEHOLDERS)
        return n

    def bvt_of(value: Any, key: str) -> dict:
        t = ck.table(value, key, BVT_KEYS)
        out = {}
        if "mcu_advance" in t:
            out["mcu_advance"] = ck.integer(t["mcu_advance"], f"{key}.mcu_advance", 1, 0xFFFFFFFF)
        if "warpback" in t:
            if not isinstance(t["warpback"], bool):
                raise ck.error(f"{key}.warpback", f"expected true or false, got {_show(t['warpback'])}")
            out["warpback"] = int(t["warpback"])
        if "warp_value" in t:
            out["warp_value"] = ck.integer(t["warp_value"], f"{key}.warp_value", -(1 << 31), (1 << 31) - 1)
        for k in ("warpl_ms", "warpu_ms"):
            if k in t:
                out[k] = ck.integer(t[k], f"{key}.{k}", 0, 1 << 40)
        return out

    def cmdline_of(value: Any, key: str) -> str:
        c = ck.string(value, key)
        nbytes = len(c.encode("utf-8"))
        if nbytes > MAX_CMDLINE - 1:
            raise ck.error(key, f"{nbytes} bytes long, the limit is {MAX_CMDLINE - 1} "
                                f"(start_info.cmd_line[{MAX_CMDLINE}])")
        if "\0" in c:
            raise ck.error(key, "must not contain NUL characters")
        ck.template(c, key, CMDLINE_PLACEHOLDERS)
        return c

    def check_rendered_cmdline(spec: DomainSpec, key: str) -> None:
        # Only the domid is unknown until the builder runs: bound it by the largest.
        nbytes = len(spec.render_cmdline(MAX_DOMID).encode("utf-8"))
        if nbytes > MAX_CMDLINE - 1:
            raise ck.error(key, f"for domain {spec.name!r} expands to up to {nbytes} bytes, "
                                f"the limit is {MAX_CMDLINE - 1} (start_info.cmd_line[{MAX_CMDLINE}])")

    def render_name(template: str, index: int, key: str) -> str:
        n = template.format_map({"index": index})
        if not n:
            raise ck.error(key, "expands to an empty name")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in n):
            raise ck.error(key, f"name {n!r} contains control characters")
        return n

    dom0: DomainSpec | None = None
    if "dom0" in raw:
        d = ck.table(raw["dom0"], "dom0", DOM0_KEYS)
        dd = DEFAULTS["dom0"]
        if "kernel" not in d:
            raise ck.error("dom0.kernel", "required key missing")
        tmpl = name_template(d.get("name", dd["name"]), "dom0.name")
        dom0 = DomainSpec(
            name=render_name(tmpl, 0, "dom0.name"),
            kernel=kernel_of(d["kernel"], "dom0.kernel"),
            memory_bytes=ck.integer(d.get("memory_mib", dd["memory_mib"]), "dom0.memory_mib",
                                    *DOMAIN_MEMORY_MIB) * MIB,
            cpu=cpu_index(d.get("cpu", dd["cpu"]), "dom0.cpu"),
            cmdline_template=cmdline_of(d.get("cmdline", dd["cmdline"]), "dom0.cmdline"),
            privileged=True,
            index=0,
            bvt=bvt_of(d.get("bvt", {}), "dom0.bvt"),
        )
        check_rendered_cmdline(dom0, "dom0.cmdline")

    entries = raw.get("domain", [])
    if not isinstance(entries, list):
        raise ck.error("domain", f"expected an array of tables ([[domain]]), got {_show(entries)}")

    # First pass: validate each entry, and the memory total before expanding
    # (so a huge count is reported as too much memory, not built).
    parsed = []
    total = dom0.memory_bytes if dom0 is not None else 0
    ndomains = 1 if dom0 is not None else 0
    too_many: str | None = None       # the entry that takes the count past max_domains
    for i, e in enumerate(entries):
        key = f"domain[{i}]"
        ck.table(e, key, DOMAIN_KEYS)
        dd = DEFAULTS["domain"]
        if "kernel" not in e:
            raise ck.error(f"{key}.kernel", "required key missing")
        tmpl = name_template(e.get("name", dd["name"]), f"{key}.name")
        kernel = kernel_of(e["kernel"], f"{key}.kernel")
        mem = ck.integer(e.get("memory_mib", dd["memory_mib"]), f"{key}.memory_mib",
                         *DOMAIN_MEMORY_MIB) * MIB
        count_v = e.get("count", dd["count"])
        per_cpu = count_v == "per_cpu"
        if per_cpu:
            count = ncpus
            if "cpu" in e and e["cpu"] != "auto":
                raise ck.error(f"{key}.cpu", "cannot be set with count = \"per_cpu\" "
                                            "(instance i runs on PCPU i)")
            cpu = None
        else:
            if isinstance(count_v, bool) or not isinstance(count_v, int):
                raise ck.error(f"{key}.count",
                               f"expected an integer or \"per_cpu\", got {_show(count_v)}")
            count = ck.integer(count_v, f"{key}.count", lo=1)
            cpu = cpu_index(e.get("cpu", dd["cpu"]), f"{key}.cpu")
        cmdline = cmdline_of(e.get("cmdline", dd["cmdline"]), f"{key}.cmdline")
        bvt = bvt_of(e.get("bvt", {}), f"{key}.bvt")
        total += mem * count
        ndomains += count
        parsed.append((key, tmpl, kernel, mem, count, per_cpu, cpu, cmdline, bvt))
        if ndomains > max_domains and too_many is None:
            too_many = f"{key}.count" if "count" in e else key

    if dom0 is None and not parsed:
        raise ck.error("domain", "nothing to run: no [dom0] table and no [[domain]] entries")

    reserved = int(reserve_bytes(ncpus, memory_bytes)) if reserve_bytes is not None else 0
    available = memory_bytes - reserved
    overhead = ndomains * domain_overhead_bytes
    if total + overhead > available:
        plus = ""
        if overhead:
            plural = "s" if ndomains != 1 else ""
            plus = (f" plus {_fmt_size(overhead)} the hypervisor takes for {ndomains} "
                    f"domain{plural} ({_fmt_size(domain_overhead_bytes)} each)")
        raise ck.error("domain", f"total domain memory {_fmt_mib(total)}{plus} exceeds the "
                                 f"{_fmt_mib(memory_bytes)} machine less {_fmt_mib(reserved)} "
                                 f"reserved for the hypervisor")
    if too_many is not None:
        raise ck.error(too_many, f"makes {ndomains} domains{' with dom0' if dom0 else ''}; "
                                 f"the hypervisor's domain table holds {max_domains}")

    # Second pass: expand instances; names must be unique machine-wide.
    seen: dict[str, str] = {}
    if dom0 is not None:
        seen[dom0.name] = "dom0"
    domains: list[DomainSpec] = []
    for key, tmpl, kernel, mem, count, per_cpu, cpu, cmdline, bvt in parsed:
        name_key = f"{key}.name"
        for idx in range(count):
            n = render_name(tmpl, idx, name_key)
            if n in seen:
                hint = ""
                if count > 1 and "{index}" not in tmpl:
                    hint = f"; this entry has {count} instances, put {{index}} in its name"
                where = seen[n]
                raise ck.error(name_key, f"duplicate domain name {n!r} (also {where}){hint}")
            seen[n] = key if count == 1 else f"{key} instance {idx}"
            spec = DomainSpec(
                name=n,
                kernel=kernel,
                memory_bytes=mem,
                cpu=idx if per_cpu else cpu,
                cmdline_template=cmdline,
                privileged=False,
                index=idx,
                bvt=bvt,
            )
            check_rendered_cmdline(spec, f"{key}.cmdline")
            domains.append(spec)

    return MachineConfig(
        path=p.resolve(),
        name=name,
        cpus=ncpus,
        memory_bytes=memory_bytes,
        time_model=time_model,
        console_io=console_io,
        scheduler=scheduler,
        clocks=clocks,
        dom0=dom0,
        domains=domains,
        raw=raw,
    )


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_EOD = re.compile(r"\s*\(at end of document\)\s*$")


def _toml_error(ck: _Checker, msg: str) -> ConfigError:
    msg = msg.strip()
    mpos = _TOML_POS.search(msg)
    if mpos:
        where = f"line {mpos.group(1)}, column {mpos.group(2)}"
        reason = msg[: mpos.start()]
    elif _TOML_EOD.search(msg):
        where = "end of file"
        reason = _TOML_EOD.sub("", msg)
    else:
        where, reason = None, msg
    return ck.error(where, f"TOML syntax error: {reason}")


def _load_clocks(ck: _Checker, c: Any, ncpus: int, cpus_note: str) -> list[ClockSpec]:
    ck.table(c, "clock", CLOCK_KEYS)
    cd = DEFAULTS["clock"]

    def fields(t: dict, key: str, base: tuple[float, int, float]) -> tuple[float, int, float]:
        freq, off, drift = base
        if "freq_mhz" in t:
            freq = ck.number(t["freq_mhz"], f"{key}.freq_mhz", MIN_FREQ_MHZ, MAX_FREQ_MHZ,
                             positive=True, why=FREQ_WHY) * 1e6
        if "offset_cycles" in t:
            off = ck.integer(t["offset_cycles"], f"{key}.offset_cycles", lo=0)
            ck.integer(off, f"{key}.offset_cycles", hi=MAX_OFFSET_CYCLES,
                       why="the cycle counter is 64 bits wide")
        if "drift_ppm" in t:
            drift = ck.number(t["drift_ppm"], f"{key}.drift_ppm", -MAX_DRIFT_PPM, MAX_DRIFT_PPM)
        return freq, off, drift

    base = fields(c, "clock", (float(cd["freq_mhz"]) * 1e6, cd["offset_cycles"],
                               float(cd["drift_ppm"])))
    per = [base] * ncpus

    overrides = c.get("pcpu", [])
    if not isinstance(overrides, list):
        raise ck.error("clock.pcpu",
                       f"expected an array of tables ([[clock.pcpu]]), got {_show(overrides)}")
    seen: dict[int, int] = {}
    for i, o in enumerate(overrides):
        key = f"clock.pcpu[{i}]"
        ck.table(o, key, PCPU_CLOCK_KEYS)
        if "index" not in o:
            raise ck.error(f"{key}.index", "required key missing")
        idx = ck.integer(o["index"], f"{key}.index", lo=0)
        if idx >= ncpus:
            raise ck.error(f"{key}.index", f"PCPU {_short(idx)} out of range: {cpus_note}")
        if idx in seen:
            raise ck.error(f"{key}.index", f"PCPU {idx} already set by clock.pcpu[{seen[idx]}]")
        seen[idx] = i
        per[idx] = fields(o, key, base)
    return [ClockSpec(freq_hz=f, offset_cycles=off, drift_ppm=d) for f, off, d in per]
