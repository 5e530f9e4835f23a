"""Loading a machine configuration: read the TOML file, check every key against
the schema (smpxen/config/schema.py) with the value checks (smpxen/config/checks.py)
and resolve it into a MachineConfig the machine can build and run."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable

from smpxen.config.checks import _Checker, _fmt_mib, _fmt_size, _short, _show, _toml_error
from smpxen.config.schema import (BVT_KEYS, CLOCK_KEYS, CMDLINE_PLACEHOLDERS, CONSOLE_IO_MODES,
                                  ClockSpec, DEFAULTS, DOM0_KEYS, DOMAIN_KEYS, DOMAIN_MEMORY_MIB,
                                  DomainSpec, FREQ_WHY, MACHINE_KEYS, MACHINE_MEMORY_MIB,
                                  MAX_CMDLINE, MAX_CPUS, MAX_DOMID, MAX_DRIFT_PPM,
                                  MAX_FREQ_MHZ, MAX_OFFSET_CYCLES, MIB, MIN_CPUS, MIN_FREQ_MHZ,
                                  MachineConfig, NAME_PLACEHOLDERS, PCPU_CLOCK_KEYS, SCHEDULERS,
                                  TIME_MODELS, TOP_KEYS, TRACE_PAGES)
from smpxen.shm.layout import MAX_DOMAINS

PAGE_BYTES = 4096


def load_config(
    path: str | os.PathLike,
    *,
    cpus: int | None = None,
    bundled_guests: Iterable[str] = frozenset(),
    reserve_bytes: Callable[[int, int], int] | None = None,
    domain_overhead_bytes: int = 0,
    max_domains: int = MAX_DOMAINS,
    overrides: Iterable[str] = (),
) -> MachineConfig:
    """Load and validate a machine config.

    cpus           -- the --cpus argument; overrides machine.cpus when not None.
    bundled_guests -- names a bare ``kernel = "name"`` may refer to.
    reserve_bytes  -- callable (cpus, memory_bytes) -> bytes the hypervisor keeps
                      for itself; domain memory must fit in the rest.  None: 0.
    domain_overhead_bytes -- what building a domain takes from the free pool
                      besides its memory (smpxen.domain.builder.DOMAIN_EXTRA_FRAMES).
    max_domains    -- slots in the hypervisor's domain table, dom0 included.
    overrides      -- `--set KEY=VALUE` items applied to the raw TOML before any
                      check (smpxen/config/overrides.py).
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
    if overrides:
        from smpxen.config.overrides import apply_overrides
        raw = apply_overrides(raw, overrides, file)

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

    # "auto": just enough for the domains and the hypervisor, decided once they are known.
    raw_memory = m.get("memory_mib", md["memory_mib"])
    auto_memory = raw_memory == "auto"
    if auto_memory:
        memory_bytes = MACHINE_MEMORY_MIB[0] * MIB
    else:
        if isinstance(raw_memory, str):
            raise ck.error("machine.memory_mib", f'expected an integer or "auto", got {_show(raw_memory)}')
        memory_bytes = ck.integer(raw_memory, "machine.memory_mib", *MACHINE_MEMORY_MIB) * MIB
    time_model = ck.choice(m.get("time_model", md["time_model"]), "machine.time_model", TIME_MODELS)
    console_io = ck.choice(m.get("console_io", md["console_io"]), "machine.console_io",
                           CONSOLE_IO_MODES)
    scheduler = ck.choice(m.get("scheduler", md["scheduler"]), "machine.scheduler", SCHEDULERS)
    trace_pages = ck.integer(m.get("trace_pages", md["trace_pages"]), "machine.trace_pages", *TRACE_PAGES)
    trace_mask = _trace_mask(ck, m.get("trace_mask", md["trace_mask"]))
    if trace_pages and reserve_bytes is not None:     # the buffers sit after the hypervisor's tables
        hv_reserve = reserve_bytes
        reserve_bytes = lambda n, size: hv_reserve(n, size) + n * trace_pages * PAGE_BYTES

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

    overhead = ndomains * domain_overhead_bytes
    if auto_memory:
        memory_bytes = _auto_memory(ck, total + overhead, ncpus, reserve_bytes)
    reserved = int(reserve_bytes(ncpus, memory_bytes)) if reserve_bytes is not None else 0
    available = memory_bytes - reserved
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
        trace_pages=trace_pages,
        trace_mask=trace_mask,
    )


def _trace_mask(ck: _Checker, value: Any) -> int:
    from smpxen.trace.mask import MaskError, parse_mask
    try:
        return parse_mask(value)
    except MaskError as e:
        raise ck.error("machine.trace_mask", str(e)) from None


def _auto_memory(ck: _Checker, needed: int, ncpus: int, reserve_bytes) -> int:
    """machine.memory_mib = "auto": the smallest whole number of 4 MiB that holds
    `needed` bytes of domains plus the hypervisor's reservation (which itself grows
    with the RAM, hence the loop), at least the machine minimum."""
    step, most = 4 * MIB, MACHINE_MEMORY_MIB[1] * MIB
    size = max(MACHINE_MEMORY_MIB[0] * MIB, -(-needed // step) * step)
    while size <= most and reserve_bytes is not None and needed + int(reserve_bytes(ncpus, size)) > size:
        size += step
    if size > most:
        raise ck.error("machine.memory_mib", f'"auto" needs {_fmt_mib(size)}, above the '
                                             f"{MACHINE_MEMORY_MIB[1]} MiB a machine can have")
    return size


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
