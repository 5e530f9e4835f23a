"""Value checks for the config loader: each names the key it checks in the one-line
ConfigError it raises (smpxen/config/schema.py)."""
from __future__ import annotations

import math
import re
import string
from typing import Any, Iterable

from smpxen.config.schema import MIB, ConfigError

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
