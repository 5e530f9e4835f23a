"""What a sweep runs: a base machine config, a grid of config keys (and environment
variables), values derived from the grid, repeats and extra `smpxen up` arguments.

A sweep comes from the command line (`smpxen sweep CONFIG --set KEY=V1,V2 ...`) or
from an experiment file, a TOML file with a [sweep] table (see experiments/README.md
and smpxen/sweep/__init__.py); the command line adds to or replaces what the file
says. Everything is checked before anything runs: every point's config is loaded
with its --set items exactly as `smpxen up` will load it.
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import operator
import os
import re
import string
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smpxen.config.overrides import parse_value, split_assignment

ENV_PREFIX = "env."
SPEC_KEYS = ("description", "config", "repeat", "timeout", "up_args", "grid", "derive")
PLOT_KEYS = ("kind", "out", "metric", "x", "y", "group", "title", "logx", "logy")
# Passed by the sweep itself to every `smpxen up`.
RESERVED_UP_ARGS = ("--config", "--report")


class SweepError(Exception):
    """A bad sweep definition: one line, exit status 2, nothing has run."""


# --------------------------------------------------------------------------- #
# Values


def split_values(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c']; commas inside quotes ("..." or '...') or brackets
    ([...] or {...}) do not split: '"x,y",z' -> ['"x,y"', 'z']."""
    out, cur, depth, quote = [], [], 0, None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch in "[{":
            depth += 1
            cur.append(ch)
        elif ch in "]}":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quote:
        raise ValueError(f"unterminated quote in {text!r}")
    out.append("".join(cur).strip())
    if any(v == "" for v in out):
        raise ValueError(f"empty value in {text!r}")
    return out


def toml_text(value: Any) -> str:
    """A scalar as TOML text that parse_value reads back as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)     # a TOML basic string
    raise ValueError(f"expected a string, number or boolean, got {value!r}")


def env_value(text: str) -> str:
    """An environment axis value: the text, or a quoted TOML string's contents."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        v = parse_value(text)
        if isinstance(v, str):
            return v
    return text


@dataclass
class Axis:
    key: str                # a config key (dotted, as for --set) or env.NAME
    texts: list[str]        # each value as --set VALUE text (env: the variable's value)

    @property
    def is_env(self) -> bool:
        return self.key.startswith(ENV_PREFIX)

    def value(self, text: str) -> Any:
        return env_value(text) if self.is_env else parse_value(text, self.key)


def parse_axis(item: str, what: str = "--set") -> Axis:
    try:
        key, text = split_assignment(item)
        texts = split_values(text)
    except ValueError as e:
        raise SweepError(f"{what} {item.partition('=')[0] or item}: {e}") from None
    return Axis(key, texts)


# --------------------------------------------------------------------------- #
# Derived values: "{machine.cpus} - 1"

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
        ast.Pow: operator.pow}
_FUNCS = {"min": min, "max": max, "round": round, "int": int, "abs": abs}


def _arith(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _arith(node.left), _arith(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _arith(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
            and not node.keywords:
        return _FUNCS[node.func.id](*[_arith(a) for a in node.args])
    raise ValueError("not arithmetic")


def _field(expr: str, values: dict[str, Any]) -> Any:
    """A {field}: a grid key, or arithmetic of grid keys ({machine.memory_mib * 256})."""
    if expr in values:
        return values[expr]
    text = expr
    for k in sorted(values, key=len, reverse=True):
        v = values[k]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            text = re.sub(rf"(?<![\w.]){re.escape(k)}(?![\w.])", repr(v), text)
    try:
        return _arith(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        raise ValueError(f"{{{expr}}} is not a grid key or arithmetic of numeric grid keys "
                         f"(grid: {', '.join(values) or 'none'})") from None


def derive(template: str, values: dict[str, Any]) -> tuple[Any, str]:
    """Fill {key} references from values (a field may also be arithmetic of keys:
    {machine.memory_mib * 256}); if the result is arithmetic (numbers, + - * / // %
    **, min/max/round/int/abs) it is evaluated. Returns (value, --set VALUE text).
    Raises ValueError naming an unknown reference."""
    parts = []
    for literal, field_name, spec, conv in string.Formatter().parse(template):
        parts.append(literal)
        if field_name is None:
            continue
        if spec or conv:
            raise ValueError(f"{{{field_name}}}: no format spec or conversion allowed")
        v = _field(field_name, values)
        parts.append(toml_text(v) if isinstance(v, bool) else str(v))
    text = "".join(parts)
    try:
        value = _arith(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return text, text
    return value, toml_text(value)


# --------------------------------------------------------------------------- #
# Points


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def _slug(text: str) -> str:
    return _UNSAFE.sub("_", text)


@dataclass
class Point:
    """One run: the grid values (axes then derived keys, as columns), the --set
    items and environment for `smpxen up`, and the repeat index."""
    values: dict[str, Any]
    sets: list[str]
    env: dict[str, str]
    repeat: int
    name: str
    identity: str

    @property
    def label(self) -> str:
        return self.name


@dataclass
class Sweep:
    config_path: Path            # the base machine config as `smpxen up --config` gets it
    config_text: str
    axes: list[Axis] = field(default_factory=list)
    derived: dict[str, str] = field(default_factory=dict)
    up_args: list[str] = field(default_factory=list)
    repeat: int = 1
    timeout: float | None = None
    plots: list[dict] = field(default_factory=list)
    description: str = ""
    spec_path: Path | None = None
    inline_config: bool = False

    def set_axis(self, axis: Axis) -> None:
        """Add an axis, or replace the axis of the same key."""
        for i, a in enumerate(self.axes):
            if a.key == axis.key:
                self.axes[i] = axis
                return
        self.axes.append(axis)

    @property
    def columns(self) -> list[str]:
        return [a.key for a in self.axes] + [k for k in self.derived if k not in
                                             {a.key for a in self.axes}]

    def points(self) -> list[Point]:
        points = []
        named = self.axes     # every axis, so a point keeps its name when the grid changes
        for combo in itertools.product(*[a.texts for a in self.axes]):
            values: dict[str, Any] = {}
            sets: list[str] = []
            env: dict[str, str] = {}
            for axis, text in zip(self.axes, combo):
                values[axis.key] = axis.value(text)
                if axis.is_env:
                    env[axis.key[len(ENV_PREFIX):]] = values[axis.key]
                else:
                    sets.append(f"{axis.key}={text}")
            for key, template in self.derived.items():
                try:
                    value, text = derive(template, values)
                except ValueError as e:
                    raise SweepError(f"derive {key}: {e}") from None
                if key.startswith(ENV_PREFIX):
                    env[key[len(ENV_PREFIX):]] = str(value)
                    values[key] = str(value)
                else:
                    values[key] = parse_value(text, key)
                    sets.append(f"{key}={text}")
            base = ",".join(f"{a.key}={_slug(str(values[a.key]))}" for a in named)
            if len(base) > 120:
                base = base[:100] + "-" + hashlib.sha1(base.encode()).hexdigest()[:10]
            ident = hashlib.sha256(json.dumps({
                "config": self.config_text, "sets": sets, "env": env, "up_args": self.up_args,
                "timeout": self.timeout}, sort_keys=True).encode()).hexdigest()[:20]
            for r in range(self.repeat):
                name = f"{base},r={r}" if base else f"r={r}"
                points.append(Point(dict(values), list(sets), dict(env), r, name, ident))
        return points

    def to_dict(self) -> dict:
        return {"config": str(self.config_path), "inline_config": self.inline_config,
                "spec": str(self.spec_path) if self.spec_path else None,
                "description": self.description,
                "grid": {a.key: [a.value(t) for t in a.texts] for a in self.axes},
                "derive": dict(self.derived), "up_args": list(self.up_args),
                "repeat": self.repeat, "timeout": self.timeout, "plots": self.plots}


# --------------------------------------------------------------------------- #
# Experiment files


def is_spec(path: Path) -> bool:
    try:
        return "sweep" in tomllib.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def load_spec(path: Path) -> Sweep:
    """An experiment file: [sweep] (config, grid, derive, repeat, timeout, up_args,
    description) and [[plot]] tables."""
    where = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"{where}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{where}: TOML syntax error: {e}") from None
    for k in doc:
        if k not in ("sweep", "plot"):
            raise SweepError(f"{where}: {k}: unknown key (known: sweep, plot)")
    s = doc["sweep"]
    if not isinstance(s, dict):
        raise SweepError(f"{where}: sweep: expected a table")
    for k in s:
        if k not in SPEC_KEYS:
            raise SweepError(f"{where}: sweep.{k}: unknown key (known: {', '.join(SPEC_KEYS)})")
    cfg = s.get("config")
    if not isinstance(cfg, str) or not cfg:
        raise SweepError(f"{where}: sweep.config: required: a path to a machine config, "
                         f"or the config itself as a multi-line string")
    inline = "\n" in cfg
    if inline:
        config_path, text = Path(path).with_suffix(".machine.toml"), cfg
    else:
        config_path = (Path(path).parent / cfg).resolve()
        try:
            text = config_path.read_text()
        except OSError as e:
            raise SweepError(f"{where}: sweep.config: cannot read {config_path}: "
                             f"{e.strerror or e}") from None
    sw = Sweep(config_path=config_path, config_text=text, spec_path=Path(path).resolve(),
               inline_config=inline, description=str(s.get("description", "")))
    grid = s.get("grid", {})
    if not isinstance(grid, dict):
        raise SweepError(f"{where}: sweep.grid: expected a table of KEY = [values]")
    for key, vals in grid.items():
        vals = vals if isinstance(vals, list) else [vals]
        if not vals:
            raise SweepError(f"{where}: sweep.grid.{key}: no values")
        try:
            texts = [str(v) if key.startswith(ENV_PREFIX) else toml_text(v) for v in vals]
        except ValueError as e:
            raise SweepError(f"{where}: sweep.grid.{key}: {e} (set keys inside a table by "
                             f"their dotted path)") from None
        sw.set_axis(Axis(key, texts))
    derived = s.get("derive", {})
    if not isinstance(derived, dict) or not all(isinstance(v, str) for v in derived.values()):
        raise SweepError(f"{where}: sweep.derive: expected a table of KEY = \"template\"")
    sw.derived = dict(derived)
    if "repeat" in s:
        sw.repeat = s["repeat"]
    if "timeout" in s:
        sw.timeout = s["timeout"]
    up_args = s.get("up_args", [])
    if not isinstance(up_args, list) or not all(isinstance(a, str) for a in up_args):
        raise SweepError(f"{where}: sweep.up_args: expected a list of strings")
    sw.up_args = list(up_args)
    plots = doc.get("plot", [])
    if not isinstance(plots, list):
        raise SweepError(f"{where}: plot: expected [[plot]] tables")
    for i, p in enumerate(plots):
        for k in p:
            if k not in PLOT_KEYS:
                raise SweepError(f"{where}: plot[{i}].{k}: unknown key (known: {', '.join(PLOT_KEYS)})")
        if "kind" not in p:
            raise SweepError(f"{where}: plot[{i}].kind: required")
    sw.plots = plots
    return sw


# --------------------------------------------------------------------------- #
# Checks before anything runs


def check(sweep: Sweep) -> list[Point]:
    """Every point's config loads with its --set items, and the extra `smpxen up`
    arguments parse; returns the points. Raises SweepError (one line)."""
    import click
    from smpxen.cli import up
    from smpxen.config import ConfigError, load_config
    from smpxen.config.overrides import set_origin
    from smpxen.domain.builder import DOMAIN_EXTRA_FRAMES
    from smpxen.guests.assemble import bundled_guest_names
    from smpxen.shm.layout import MAX_DOMAINS, Layout
    from smpxen.xen.arch_x86_32 import PAGE_SIZE

    if isinstance(sweep.repeat, bool) or not isinstance(sweep.repeat, int) or sweep.repeat < 1:
        raise SweepError(f"repeat: expected an integer >= 1, got {sweep.repeat!r}")
    if sweep.timeout is not None and (isinstance(sweep.timeout, bool) or
                                      not isinstance(sweep.timeout, (int, float)) or
                                      not sweep.timeout > 0):
        raise SweepError(f"timeout: expected seconds > 0, got {sweep.timeout!r}")
    for a in sweep.up_args:
        if a.split("=", 1)[0] in RESERVED_UP_ARGS:
            raise SweepError(f"extra smpxen up arguments: {a.split('=', 1)[0]} is set by the sweep "
                             f"(use --set KEY=VALUE to change the config)")
    try:
        ctx = up.make_context("up", list(sweep.up_args), resilient_parsing=False)
    except click.exceptions.Exit:
        raise SweepError("extra smpxen up arguments: --help is not a run") from None
    except click.ClickException as e:
        raise SweepError(f"extra smpxen up arguments: {e.format_message()}") from None
    migrate = [m.rpartition(":")[0] for m in ctx.params.get("migrate", ())]
    for a in sweep.axes:
        if a.is_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", a.key[len(ENV_PREFIX):]):
            raise SweepError(f"{a.key}: not an environment variable name")
    points = sweep.points()
    bundled = bundled_guest_names()
    with tempfile.TemporaryDirectory(prefix="smpxen-sweep-check-") as tmp:
        path = sweep.config_path
        if sweep.inline_config:
            path = Path(tmp) / "config.toml"
            path.write_text(sweep.config_text)
        seen = set()
        for p in points:
            if p.identity in seen:
                continue
            seen.add(p.identity)
            try:
                cfg = load_config(path, cpus=None, bundled_guests=bundled,
                                  reserve_bytes=Layout.reserve_bytes,
                                  domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * PAGE_SIZE,
                                  max_domains=MAX_DOMAINS, overrides=p.sets)
            except ConfigError as e:
                origin = set_origin(e.key, p.sets)
                shown = str(e).replace(str(path), str(sweep.config_path), 1)
                raise SweepError(f"point {p.name.rsplit(',r=', 1)[0]}: {shown}"
                                 + (f" (from --set {origin})" if origin else "")) from None
            names = {d.name for d in cfg.all_domains}
            for m in migrate:
                if m not in names:
                    raise SweepError(f"point {p.name}: --migrate: no domain named {m!r} "
                                     f"(domains: {', '.join(sorted(names))})")
    return points


def host_info() -> dict:
    import platform
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "machine": platform.machine(),
            # Other work on the host skews every timing: the 1-minute load average
            # when the run ended says how busy it was.
            "load1": round(os.getloadavg()[0], 2)}
