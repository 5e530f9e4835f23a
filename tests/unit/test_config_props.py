"""Property: whatever TOML document a config file holds, load_config either returns
a config the machine can build (within every limit it has) or raises ConfigError
whose str() is one line naming the file. Nothing else escapes.

Documents are generated as Python values (plausible and implausible keys and
values for every key of the schema) and serialised to TOML here, in header form
([table], [[array]]) or inline, so the loader sees what a user could write."""
from __future__ import annotations

import datetime
import math
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpxen.config import ConfigError, MachineConfig, load_config
from smpxen.config.schema import (BVT_KEYS, CLOCK_KEYS, CONSOLE_IO_MODES, DOM0_KEYS, DOMAIN_KEYS,
                                  MACHINE_KEYS, MAX_CMDLINE, MAX_DOMID, MAX_DRIFT_PPM, MAX_FREQ_MHZ,
                                  MAX_OFFSET_CYCLES, MIN_FREQ_MHZ, PCPU_CLOCK_KEYS, SCHEDULERS,
                                  TIME_MODELS, TOP_KEYS)
from smpxen.domain.builder import DOMAIN_EXTRA_FRAMES
from smpxen.shm.layout import MAX_DOMAINS, Layout
from smpxen.xen.arch_x86_32 import PAGE_SIZE

BUNDLED = frozenset({"hello", "spin"})
OVERHEAD = DOMAIN_EXTRA_FRAMES * PAGE_SIZE

# --------------------------------------------------------------------------- #
# TOML serialisation


def _key(k: str) -> str:
    return _string(k)


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class Digits(int):
    """An integer literal of this many digits (str() of an int refuses > 4300)."""


class Nested(int):
    """An array nested this deep."""


def _inline(v) -> str:
    if isinstance(v, Digits):
        return "9" * v
    if isinstance(v, Nested):
        return "[" * v + "]" * v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_inline(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict, headers: bool) -> str:
    """TOML text for `doc`. With `headers`, top-level tables become [name] sections
    and lists of tables [[name]] sections (their own sub-tables stay inline)."""
    lines = []
    later = []
    for k, v in doc.items():
        if headers and isinstance(v, dict):
            later.append(f"[{_key(k)}]")
            later += [f"{_key(kk)} = {_inline(vv)}" for kk, vv in v.items()]
        elif headers and isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for t in v:
                later.append(f"[[{_key(k)}]]")
                later += [f"{_key(kk)} = {_inline(vv)}" for kk, vv in t.items()]
        else:
            lines.append(f"{_key(k)} = {_inline(v)}")
    return "\n".join(lines + later) + "\n"


# --------------------------------------------------------------------------- #
# Documents

big_ints = st.one_of(st.integers(), st.integers(-(1 << 70), 1 << 70),
                     st.sampled_from([0, 1, -1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64,
                                      10 ** 400, -(10 ** 400), Digits(4300), Digits(4301)]))
text = st.text(max_size=30)
scalars = st.one_of(big_ints, st.floats(), st.booleans(), text, st.dates(),
                    st.sampled_from(["auto", "per_cpu", "hello", "{index}", "{domid}",
                                     Nested(3), Nested(2000)]))
any_value = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=12)


def pair(good, bad):
    """A key's values: (within every limit, plausible but wrong)."""
    return (good, bad)


u64 = pair(st.integers(0, (1 << 64) - 1), big_ints)
names = pair(st.integers(0, 10 ** 6).map("d{}-{{index}}".format)
             | st.sampled_from(["é{index}", "x" * 200]),
             st.one_of(text, st.sampled_from(["", "a\nb", "{index:02}", "{domid}", "dom0"])))
cmdlines = pair(st.sampled_from(["", "hello {domid} ({name})", "{index}", "{{x}}", "x" * 200]),
                st.one_of(text, st.sampled_from(["{", "x" * 255, "x" * 250 + "{domid}",
                                                 "é" * 128, "{cpu}", "a\x00b"])))
kernels = pair(st.sampled_from(["hello", "spin", "k.elf", "./k.elf", "sub/../k.elf"]),
               st.sampled_from(["nosuch", "missing.elf", "/no/such/dir/k.elf", "", "sub", "sub/",
                                "~no-such-user-here/k.elf", "a/" * 3000 + "k.elf"]))
cpu = pair(st.one_of(st.integers(0, 3), st.just("auto")), st.integers(-2, 70))
mem = pair(st.integers(1, 6), st.integers(-1, 5000))
count = pair(st.integers(1, 4), st.one_of(st.integers(-1, 300), st.just("per_cpu"),
                                          st.just(10 ** 40)))
freq = pair(st.floats(MIN_FREQ_MHZ, MAX_FREQ_MHZ) | st.integers(2, 20000),
            st.one_of(st.floats(), st.integers(-5, 10 ** 6),
                      st.sampled_from([1.999, 20000.001, 10 ** 400])))
drift = pair(st.floats(-MAX_DRIFT_PPM, MAX_DRIFT_PPM), st.floats() | st.integers(-1500, 1500))
bvt_int = pair(st.integers(1, 200), big_ints)


def choice(good, bad):
    return pair(st.sampled_from(good), st.sampled_from(bad))


SCHEMA = {
    "machine": {"name": pair(st.sampled_from(["m", "x y"]), text),
                "cpus": pair(st.integers(1, 8), st.integers(-1, 70)),
                "memory_mib": pair(st.integers(8, 256), st.integers(0, 5000)),
                "time_model": choice(TIME_MODELS, ("xen3", "")),
                "console_io": choice(CONSOLE_IO_MODES, ("none",)),
                "scheduler": choice(SCHEDULERS, ("credit",)),
                "trace_pages": pair(st.integers(0, 64), st.integers(-5, 10 ** 6)),
                "trace_mask": pair(st.sampled_from(["all", "sched,ipi", 0x20000, "0x01000000"]),
                                   st.sampled_from(["nope", "", 0, -1, 1 << 32, 1.5]))},
    "clock": {"freq_mhz": freq, "offset_cycles": u64, "drift_ppm": drift},
    "pcpu": {"index": pair(st.integers(0, 3), st.integers(-1, 70)),
             "freq_mhz": freq, "offset_cycles": u64, "drift_ppm": drift},
    "domain": {"name": names, "kernel": kernels, "memory_mib": mem, "cpu": cpu, "count": count,
               "cmdline": cmdlines},
    "dom0": {"name": names, "kernel": kernels, "memory_mib": mem, "cpu": cpu, "cmdline": cmdlines},
    "bvt": {"mcu_advance": bvt_int, "warpback": pair(st.booleans(), st.integers(0, 1)),
            "warp_value": bvt_int, "warpl_ms": bvt_int, "warpu_ms": bvt_int},
}


@st.composite
def documents(draw):
    """A config document. Each key present or not; its value within the limits,
    plausible but wrong, or anything at all, at rates drawn per document (often
    0, so that many documents load); now and then an unknown key."""
    bad = draw(st.sampled_from([0.0, 0.0, 0.0, 0.03, 0.15]))
    junk = draw(st.sampled_from([0.0, 0.0, 0.0, 0.0, 0.02, 0.1, 0.5]))
    rnd = draw(st.randoms(use_true_random=False))   # hypothesis's floats favour 0.0

    def odds(p):
        return rnd.random() < p

    def value(good_bad):
        if odds(junk):
            return draw(any_value)
        return draw(good_bad[1] if odds(bad) else good_bad[0])

    def table(kind, required=()):
        t = {}
        for k, strategy in SCHEMA[kind].items():
            if (k in required and not odds(bad)) or odds(0.5):
                t[k] = value(strategy)
        if kind in ("domain", "dom0") and odds(0.3):
            t["bvt"] = table("bvt")
        if odds(junk):
            t[draw(text)] = draw(any_value)
        return t

    doc = {}
    if odds(0.6):
        doc["machine"] = table("machine")
    if odds(0.5):
        doc["clock"] = table("clock")
        if odds(0.5):
            doc["clock"]["pcpu"] = [table("pcpu", ("index",)) for _ in range(rnd.randint(1, 3))]
    if odds(0.5):
        doc["dom0"] = table("dom0", ("kernel",))
    if odds(0.9):
        doc["domain"] = [table("domain", ("kernel",)) for _ in range(rnd.randint(1, 3))]
    for k in list(doc):
        if odds(junk):
            doc[k] = draw(any_value)
    if odds(junk):
        doc[draw(text)] = draw(any_value)
    return doc


# The schema above must cover every key the loader knows.
assert set(TOP_KEYS) == {"machine", "clock", "dom0", "domain"}
assert set(MACHINE_KEYS) == set(SCHEMA["machine"])
assert set(CLOCK_KEYS) == set(SCHEMA["clock"]) | {"pcpu"}
assert set(PCPU_CLOCK_KEYS) == set(SCHEMA["pcpu"])
assert set(DOMAIN_KEYS) == set(SCHEMA["domain"]) | {"bvt"}
assert set(DOM0_KEYS) == set(SCHEMA["dom0"]) | {"bvt"}
assert set(BVT_KEYS) == set(SCHEMA["bvt"])


def _check_machine_can_run(cfg: MachineConfig) -> None:
    """Every limit the machine has, on a config the loader accepted."""
    assert 1 <= cfg.cpus <= 128 and len(cfg.clocks) == cfg.cpus
    for c in cfg.clocks:
        assert MIN_FREQ_MHZ * 1e6 <= c.freq_hz <= MAX_FREQ_MHZ * 1e6
        assert 0 <= c.offset_cycles <= MAX_OFFSET_CYCLES
        assert abs(c.drift_ppm) <= MAX_DRIFT_PPM
    doms = cfg.all_domains
    assert 1 <= len(doms) <= MAX_DOMAINS
    assert 0 <= cfg.trace_pages <= 4096 and 0 < cfg.trace_mask <= 0xFFFFFFFF
    reserved = Layout.compute(cfg.memory_bytes, cfg.cpus, trace_pages=cfg.trace_pages).hv_frames * 4096
    free = cfg.memory_bytes - reserved
    assert sum(d.memory_bytes + OVERHEAD for d in doms) <= free
    assert len({d.name for d in doms}) == len(doms)
    for d in doms:
        assert d.name and d.memory_bytes >= 1 << 20
        assert d.cpu is None or 0 <= d.cpu < cfg.cpus
        assert len(d.render_cmdline(MAX_DOMID).encode()) < MAX_CMDLINE
        assert d.bundled or d.kernel.is_file()


def _load(path):
    return load_config(path, bundled_guests=BUNDLED, reserve_bytes=Layout.reserve_bytes,
                       domain_overhead_bytes=OVERHEAD, max_domains=MAX_DOMAINS)


def _workdir(tmp_path_factory):
    d = tmp_path_factory.getbasetemp() / "config-props"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    (d / "k.elf").write_bytes(b"\x7fELF")          # the loader only checks it exists
    return d


def _one_line_error_or_runnable(path):
    try:
        cfg = _load(path)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and "\r" not in msg
        assert msg.startswith(f"{path}: ")
        return None
    _check_machine_can_run(cfg)
    return cfg


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(), headers=st.booleans())
def test_any_document_loads_runnable_or_fails_in_one_line(tmp_path_factory, doc, headers):
    p = _workdir(tmp_path_factory) / "m.toml"
    p.write_text(to_toml(doc, headers), encoding="utf-8")
    _one_line_error_or_runnable(p)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(text, any_value, max_size=5), headers=st.booleans())
def test_arbitrary_top_level_documents(tmp_path_factory, doc, headers):
    p = _workdir(tmp_path_factory) / "m.toml"
    p.write_text(to_toml(doc, headers), encoding="utf-8")
    _one_line_error_or_runnable(p)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet=string.printable, max_size=200))
def test_arbitrary_bytes(tmp_path_factory, data):
    p = _workdir(tmp_path_factory) / "m.toml"
    if isinstance(data, str):
        p.write_text(data, encoding="utf-8")
    else:
        p.write_bytes(data)
    _one_line_error_or_runnable(p)


@settings(max_examples=60, deadline=None)
@given(cpus=st.integers(1, 128), dom0=st.booleans(), slack_mib=st.integers(-1, 1),
       entries=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 70)), min_size=1, max_size=3))
def test_loads_exactly_what_fits(tmp_path_factory, cpus, dom0, slack_mib, entries):
    """Machines at the edge of their memory and of the domain table: the loader
    accepts exactly those that fit after the hypervisor's reservation and the
    per-domain frames, with at most MAX_DOMAINS domains."""
    ndoms = dom0 + sum(n for _m, n in entries)
    need = (dom0 << 20) + sum(m * n << 20 for m, n in entries) + ndoms * OVERHEAD

    def free(mib):
        return (mib << 20) - Layout.reserve_bytes(cpus, mib << 20)
    memory_mib = max(8, need >> 20)
    while free(memory_mib) < need:
        memory_mib += 1
    memory_mib += slack_mib                  # the smallest machine that fits, or one less
    doc = {"machine": {"cpus": cpus, "memory_mib": memory_mib},
           "domain": [{"name": f"e{i}-{{index}}", "kernel": "hello", "memory_mib": m, "count": n}
                      for i, (m, n) in enumerate(entries)]}
    if dom0:
        doc["dom0"] = {"kernel": "hello", "memory_mib": 1}
    p = _workdir(tmp_path_factory) / "m.toml"
    p.write_text(to_toml(doc, True))
    cfg = _one_line_error_or_runnable(p)
    fits = 8 <= memory_mib <= 4096 and need <= free(memory_mib)
    assert (cfg is not None) == (fits and ndoms <= MAX_DOMAINS), (need, memory_mib, ndoms)
