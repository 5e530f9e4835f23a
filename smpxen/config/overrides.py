"""`smpxen up --set KEY=VALUE`: change the raw TOML of a config before it is checked.

KEY is a dotted path through the TOML document: tables by name
(``machine.time_model``), arrays of tables by index (``domain.0.cmdline``,
``clock.pcpu.1.drift_ppm``). An index equal to the array's length adds an entry
(``--set clock.pcpu.0.index=1`` on a config without ``[[clock.pcpu]]``), and
missing tables are created. VALUE is parsed as a TOML value (``3000``, ``true``,
``"text"``, ``{ mcu_advance = 20 }``); if it is not one, it is the plain string.
Keys the schema only takes as strings (``STRING_KEYS``: a name, kernel, command
line or mode) take VALUE as written unless it is a quoted TOML string, so
``--set domain.0.cmdline=200000`` gives the command line "200000".

The result is checked by the loader like anything written in the file. Errors
here are ConfigErrors naming the key as given: ``<file>: --set <key>: <reason>``.
"""
from __future__ import annotations

import copy
import tomllib
from typing import Any, Iterable

# Leaf keys whose every value is a string (configs/default.toml): a bare number or
# boolean given for one of them is meant as its text.
STRING_KEYS = frozenset({"name", "kernel", "cmdline", "time_model", "console_io", "scheduler"})


def parse_value(text: str, key: str = "") -> Any:
    """VALUE of KEY=VALUE: a TOML value, else the plain string (see the module doc)."""
    leaf = key.rsplit(".", 1)[-1]
    try:
        doc = tomllib.loads(f"v = {text}")
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return text
    if list(doc) != ["v"]:           # "1\nw = 2": more than one value, so not a value
        return text
    value = doc["v"]
    if leaf in STRING_KEYS and not isinstance(value, str):
        return text
    return value


def split_assignment(item: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE); raises ValueError with a one-line reason."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"expected KEY=VALUE, got {item!r}")
    if not key:
        raise ValueError(f"no key before '=' in {item!r}")
    segments = key.split(".")
    if any(not s for s in segments):
        raise ValueError(f"empty part in key {key!r}")
    return key, value


def loader_key(key: str) -> str:
    """The loader's name for a dotted --set key: domain.0.cmdline -> domain[0].cmdline."""
    out = ""
    for seg in key.split("."):
        out += f"[{seg}]" if seg.isdigit() and out else (f".{seg}" if out else seg)
    return out


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set KEY (dotted) in raw to value, creating tables and appending array entries;
    raises ValueError with a one-line reason."""
    segments = key.split(".")
    cur: Any = raw
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        here = ".".join(segments[:i]) or "the document"
        if isinstance(cur, dict):
            if last:
                cur[seg] = value
                return
            if seg not in cur:
                cur[seg] = [] if segments[i + 1].isdigit() else {}
            cur = cur[seg]
        elif isinstance(cur, list):
            if not seg.isdigit():
                raise ValueError(f"{here} is an array ({len(cur)} entries); give an index, "
                                 f"e.g. {here}.0")
            idx = int(seg)
            if idx > len(cur):
                n = len(cur)
                change = f"0..{n - 1} to change one" if n > 1 else "0 to change it"
                raise ValueError(f"{here} has {n} entr{'y' if n == 1 else 'ies'}; index {idx} is "
                                 f"out of range (use {change}, {n} to add one)"
                                 if n else f"{here} has no entries; index {idx} is out of range "
                                           f"(use 0 to add one)")
            if last:
                if idx == len(cur):
                    cur.append(value)
                else:
                    cur[idx] = value
                return
            if idx == len(cur):
                cur.append({})
            cur = cur[idx]
        else:
            raise ValueError(f"{here} is a value ({cur!r}), not a table or an array")


def apply_overrides(raw: dict, items: Iterable[str], file: str = "--set") -> dict:
    """A copy of raw (a parsed TOML document) with each KEY=VALUE of items applied
    in order. Raises ConfigError ``<file>: --set <key>: <reason>``."""
    from smpxen.config import ConfigError
    out = copy.deepcopy(raw)
    for item in items:
        try:
            key, text = split_assignment(item)
        except ValueError as e:
            raise ConfigError(file, "--set", str(e)) from None
        try:
            set_key(out, key, parse_value(text, key))
        except ValueError as e:
            raise ConfigError(file, f"--set {key}", str(e)) from None
    return out


def set_origin(error_key: str | None, items: Iterable[str]) -> str | None:
    """The --set item behind a loader error about error_key (None if none is): the
    loader names keys as written (domain[0].cmdline), --set as dotted paths."""
    if not error_key:
        return None
    found = None
    for item in items:
        key, _, _ = item.partition("=")
        lk = loader_key(key.strip())
        if error_key == lk or error_key.startswith((lk + ".", lk + "[")) or \
                lk.startswith((error_key + ".", error_key + "[")):
            found = item
    return found
