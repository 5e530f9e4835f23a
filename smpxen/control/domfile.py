"""What `xm create` builds: a TOML domain file, or a kernel with options.

A domain file holds the keys of a config's [[domain]] entry (configs/default.toml),
at its top level or in a [domain] table:

    name = "web"             # required in a file; default for a kernel: its stem
    kernel = "hello"         # a bundled guest, or an ELF path (relative to the file)
    memory_mib = 4           # 1..1024 as in configs (and at most what Domain-0's tools build)
    cpu = "auto"             # a PCPU index, or "auto": the least-populated PCPU
    cmdline = "hello from domain {domid} ({name})"
    bvt = { mcu_advance = 20 }

Instead of a file, a kernel (bundled name or ELF path) with options:
`xm create KERNEL [--name N] [--memory MIB] [--cpu N|auto] [--cmdline TEXT]`; the
options also override a file's keys. Every value is checked as the config loader
checks it; a bad one is one line naming the file and key."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from smpxen.config.checks import _Checker
from smpxen.config.schema import (BVT_KEYS, CMDLINE_PLACEHOLDERS, DOMAIN_MEMORY_MIB, MAX_CMDLINE, MIB,
                                  ConfigError)
from smpxen.control.endpoint import XmError

KEYS = ("name", "kernel", "memory_mib", "cpu", "cmdline", "bvt")
OPTIONS = {"--name": "name", "--memory": "memory_mib", "--cpu": "cpu", "--cmdline": "cmdline"}
DEFAULT_CMDLINE = "{name}"
OPTIONS_SOURCE = "xm create"  # what the checker names when the values come from the command line


@dataclass
class DomainFile:
    name: str
    kernel: str | Path
    memory_bytes: int
    cpu: int                      # -1: the least-populated PCPU
    cmdline: str                  # a template: {domid}, {name}
    bvt: dict = field(default_factory=dict)

    def render_cmdline(self, domid: int) -> str:
        return self.cmdline.format_map({"domid": domid, "name": self.name, "index": 0})


def parse_create_args(args: list[str]) -> tuple[str, dict]:
    """`xm create` arguments -> (FILE or KERNEL, {key: value from an option})."""
    if not args:
        raise XmError("create: missing FILE (a domain file .toml, or a kernel) (usage: create "
                      "FILE [--name N] [--memory MIB] [--cpu N|auto] [--cmdline TEXT] [-p])")
    target, rest, opts = args[0], args[1:], {}
    while rest:
        opt = rest.pop(0)
        if opt not in OPTIONS or not rest:
            raise XmError(f"create: {opt!r}: expected one of {', '.join(OPTIONS)} followed by a value")
        value = rest.pop(0)
        key = OPTIONS[opt]
        if key == "memory_mib":
            try:
                value = int(value)
            except ValueError:
                raise XmError(f"create: --memory {value!r}: expected a number of MiB") from None
        elif key == "cpu" and value != "auto":
            try:
                value = int(value)
            except ValueError:
                raise XmError(f"create: --cpu {value!r}: expected a PCPU index or auto") from None
        opts[key] = value
    return target, opts


def load(target: str, opts: dict, resolve, ncpus: int, bundled) -> DomainFile:
    """The domain `xm create TARGET opts` asks for. resolve(path) makes a client path
    absolute; `bundled` names the bundled guests."""
    if target.endswith(".toml"):
        path = Path(resolve(target))
        ck = _Checker(str(path))
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ck.error(None, "file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ck.error(None, f"cannot read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ck.error(None, f"TOML syntax error: {e}") from None
        table = raw.get("domain", raw) if set(raw) == {"domain"} else raw
        prefix = "domain." if table is not raw else ""
        base = path.parent
    else:
        ck, table, prefix, base = _Checker(OPTIONS_SOURCE), {"kernel": target}, "", Path(resolve("."))
    table = {**table, **opts}
    ck.table(table, prefix.rstrip("."), KEYS)

    def key(k):
        return prefix + k

    if "kernel" not in table:
        raise ck.error(key("kernel"), "required key missing")
    kernel_text = ck.string(table["kernel"], key("kernel"), nonempty=True)
    if "/" in kernel_text or kernel_text.endswith(".elf"):
        kernel: str | Path = (base / Path(kernel_text).expanduser()).resolve()
        if not kernel.is_file():
            raise ck.error(key("kernel"), f"no such file: {kernel}")
    elif kernel_text in bundled:
        kernel = kernel_text
    else:
        raise ck.error(key("kernel"), f"unknown bundled guest {kernel_text!r} (bundled: "
                                      f"{', '.join(sorted(bundled))}; a path to an ELF file must contain "
                                      "'/' or end in .elf)")
    default_name = Path(kernel_text).stem if target == kernel_text else None
    if "name" not in table and default_name is None:
        raise ck.error(key("name"), "required key missing")
    name = ck.string(table.get("name", default_name), key("name"), nonempty=True)
    if len(name.encode()) > 31 or any(ord(ch) < 0x20 for ch in name):
        raise ck.error(key("name"), f"{name!r}: at most 31 bytes, no control characters")
    memory = ck.integer(table.get("memory_mib", 4), key("memory_mib"), *DOMAIN_MEMORY_MIB)
    cpu_value = table.get("cpu", "auto")
    cpu = -1 if cpu_value == "auto" else ck.integer(cpu_value, key("cpu"), 0, ncpus - 1,
                                                    why=f"the machine has {ncpus} CPUs")
    cmdline = ck.string(table.get("cmdline", DEFAULT_CMDLINE), key("cmdline"))
    ck.template(cmdline, key("cmdline"), CMDLINE_PLACEHOLDERS)
    spec = DomainFile(name, kernel, memory * MIB, cpu, cmdline, _bvt(ck, table.get("bvt", {}), key("bvt")))
    if len(spec.render_cmdline(0x7FEF).encode()) > MAX_CMDLINE - 1:
        raise ck.error(key("cmdline"), f"longer than {MAX_CMDLINE - 1} bytes once expanded")
    return spec


def _bvt(ck: _Checker, value, key: str) -> dict:
    t = ck.table(value, key, BVT_KEYS)
    out = {}
    if "mcu_advance" in t:
        out["mcu_advance"] = ck.integer(t["mcu_advance"], f"{key}.mcu_advance", 1, 0xFFFFFFFF)
    if "warpback" in t:
        if not isinstance(t["warpback"], bool):
            raise ck.error(f"{key}.warpback", "expected true or false")
        out["warpback"] = int(t["warpback"])
    if "warp_value" in t:
        out["warp_value"] = ck.integer(t["warp_value"], f"{key}.warp_value", -(1 << 31), (1 << 31) - 1)
    for k in ("warpl_ms", "warpu_ms"):
        if k in t:
            out[k] = ck.integer(t[k], f"{key}.{k}", 0, 1 << 40)
    return out


def config_error(e: ConfigError) -> XmError:
    """One line: `create: FILE: KEY: reason`, or `create: KEY: reason` for a kernel
    with options (the verb already says where it comes from)."""
    return XmError(f"create: {str(e).removeprefix(OPTIONS_SOURCE + ': ')}")
