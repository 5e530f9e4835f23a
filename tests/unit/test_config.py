"""Tests for smpxen.config: the machine-config loader and the shipped configs."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpxen.config import (
    MIB,
    ClockSpec,
    ConfigError,
    DomainSpec,
    MachineConfig,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
BUNDLED = frozenset({"hello", "spin"})
SHIPPED = sorted(CONFIGS.glob("*.toml"))

MINIMAL_DOMAIN = '[[domain]]\nkernel = "hello"\n'


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load(tmp_path: Path, text: str, **kw) -> MachineConfig:
    kw.setdefault("bundled_guests", BUNDLED)
    return load_config(write(tmp_path, text), **kw)


def error(tmp_path: Path, text: str, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, text, **kw)
    e = ei.value
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path / "m.toml") + ": ")
    return e


def assert_error(tmp_path: Path, text: str, key: str | None, *fragments: str, **kw) -> ConfigError:
    e = error(tmp_path, text, **kw)
    assert e.key == key, str(e)
    prefix = f"{tmp_path / 'm.toml'}: {key}: " if key else f"{tmp_path / 'm.toml'}: "
    assert str(e).startswith(prefix), str(e)
    for f in fragments:
        assert f in str(e), str(e)
    return e


# --------------------------------------------------------------------------- #
# Shipped configs


def test_shipped_configs_exist():
    names = {p.name for p in SHIPPED}
    assert {"default.toml", "1cpu.toml", "8cpu.toml", "skewed.toml"} <= names
    assert (CONFIGS / "__init__.py").exists()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = load_config(path, bundled_guests=BUNDLED, reserve_bytes=lambda c, m: 3 * MIB)
    assert cfg.name == path.stem
    assert len(cfg.clocks) == cfg.cpus
    assert cfg.all_domains
    json.dumps(cfg.to_dict())
    # Every shipped file teaches the format.
    assert path.read_text().count("#") >= 5


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads_with_relative_path(path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(Path("configs") / path.name, bundled_guests=BUNDLED)
    assert cfg.path == path.resolve()


def test_default_config_contents():
    cfg = load_config(CONFIGS / "default.toml", bundled_guests=BUNDLED)
    assert cfg.cpus == 4
    assert cfg.memory_bytes == 20 * MIB          # "auto", with no hypervisor reserve given
    assert cfg.time_model == "xen2"
    assert cfg.console_io == "all"
    assert cfg.scheduler == "bvt"
    assert cfg.dom0 == DomainSpec(
        name="dom0", kernel="hello", memory_bytes=4 * MIB, cpu=0,
        cmdline_template="hello from domain {domid} ({name})", privileged=True, index=0,
    )
    assert [(d.name, d.cpu, d.index, d.kernel) for d in cfg.domains] == [
        (f"guest{i}", i, i, "hello") for i in range(4)
    ]
    assert all(d.cmdline_template == "hello from domain {domid} ({name})" for d in cfg.domains)
    assert cfg.domains[2].render_cmdline(3) == "hello from domain 3 (guest2)"
    assert cfg.clocks == [ClockSpec(2e9, 0, 0.0)] * 4


def test_default_config_follows_cpus_override():
    cfg = load_config(CONFIGS / "default.toml", cpus=2, bundled_guests=BUNDLED)
    assert cfg.cpus == 2
    assert [d.name for d in cfg.domains] == ["guest0", "guest1"]
    assert len(cfg.clocks) == 2


def test_skewed_config_has_skew():
    cfg = load_config(CONFIGS / "skewed.toml", bundled_guests=BUNDLED)
    assert cfg.time_model == "percpu"
    assert cfg.cpus == 4
    assert len({c.offset_cycles for c in cfg.clocks}) > 1
    assert len({c.drift_ppm for c in cfg.clocks}) > 1


# --------------------------------------------------------------------------- #
# Defaults, override, expansion


def test_minimal_config_defaults(tmp_path):
    cfg = load(tmp_path, MINIMAL_DOMAIN)
    assert cfg.name == "m"
    assert cfg.cpus == 4
    assert cfg.memory_bytes == 8 * MIB           # "auto": the machine minimum holds one 4 MiB domain
    assert (cfg.time_model, cfg.console_io, cfg.scheduler) == ("xen2", "all", "bvt")
    assert cfg.dom0 is None
    assert cfg.domains == [DomainSpec("guest0", "hello", 4 * MIB, None, "", False, 0)]
    assert cfg.clocks == [ClockSpec(2000e6, 0, 0.0)] * 4
    assert cfg.raw == {"domain": [{"kernel": "hello"}]}
    assert cfg.path == (tmp_path / "m.toml").resolve()


def test_dom0_only_is_enough(tmp_path):
    cfg = load(tmp_path, '[dom0]\nkernel = "spin"\n')
    assert cfg.dom0.privileged and cfg.dom0.name == "dom0" and cfg.dom0.cpu is None
    assert cfg.domains == []


def test_machine_keys(tmp_path):
    cfg = load(tmp_path, """
        [machine]
        name = "box"
        cpus = 2
        memory_mib = 128
        time_model = "percpu"
        console_io = "dom0"
        scheduler = "bvt"
    """ + MINIMAL_DOMAIN)
    assert (cfg.name, cfg.cpus, cfg.memory_bytes) == ("box", 2, 128 * MIB)
    assert (cfg.time_model, cfg.console_io) == ("percpu", "dom0")


def test_cpus_override(tmp_path):
    text = "[machine]\ncpus = 2\n" + MINIMAL_DOMAIN
    assert load(tmp_path, text).cpus == 2
    assert load(tmp_path, text, cpus=8).cpus == 8
    assert len(load(tmp_path, text, cpus=8).clocks) == 8
    assert load(tmp_path, MINIMAL_DOMAIN, cpus=1).cpus == 1


def test_per_cpu_expansion(tmp_path):
    text = """
        [machine]
        cpus = 3
        [[domain]]
        name = "w{index}"
        kernel = "spin"
        count = "per_cpu"
        memory_mib = 2
        cmdline = "i={index} d={domid} n={name}"
    """
    cfg = load(tmp_path, text)
    assert [(d.name, d.cpu, d.index, d.memory_bytes) for d in cfg.domains] == [
        ("w0", 0, 0, 2 * MIB), ("w1", 1, 1, 2 * MIB), ("w2", 2, 2, 2 * MIB)]
    assert cfg.domains[1].render_cmdline(7) == "i=1 d=7 n=w1"
    cfg = load(tmp_path, text, cpus=5)
    assert [d.cpu for d in cfg.domains] == [0, 1, 2, 3, 4]


def test_per_cpu_with_auto_cpu_allowed(tmp_path):
    cfg = load(tmp_path, '[[domain]]\nkernel = "hello"\ncount = "per_cpu"\ncpu = "auto"\n',
               cpus=2)
    assert [d.cpu for d in cfg.domains] == [0, 1]


def test_integer_count_expansion(tmp_path):
    cfg = load(tmp_path, """
        [[domain]]
        name = "a{index}"
        kernel = "hello"
        count = 3
        cpu = 1
        [[domain]]
        name = "b"
        kernel = "spin"
    """)
    assert [(d.name, d.cpu, d.index, d.kernel) for d in cfg.domains] == [
        ("a0", 1, 0, "hello"), ("a1", 1, 1, "hello"), ("a2", 1, 2, "hello"), ("b", None, 0, "spin")]
    assert not any(d.privileged for d in cfg.domains)


def test_clock_defaults_and_pcpu_overrides(tmp_path):
    cfg = load(tmp_path, """
        [clock]
        freq_mhz = 1000
        offset_cycles = 5
        drift_ppm = 10
        [[clock.pcpu]]
        index = 2
        drift_ppm = -1000
        [[clock.pcpu]]
        index = 0
        freq_mhz = 1500.5
        offset_cycles = 0
    """ + MINIMAL_DOMAIN)
    assert cfg.clocks == [
        ClockSpec(1500.5e6, 0, 10.0),
        ClockSpec(1000e6, 5, 10.0),
        ClockSpec(1000e6, 5, -1000.0),
        ClockSpec(1000e6, 5, 10.0),
    ]
    assert all(isinstance(c.freq_hz, float) and isinstance(c.drift_ppm, float) for c in cfg.clocks)
    assert all(isinstance(c.offset_cycles, int) for c in cfg.clocks)


def test_memory_fits_exactly(tmp_path):
    text = "[machine]\nmemory_mib = 16\n[[domain]]\nkernel = \"hello\"\nmemory_mib = 13\n"
    cfg = load(tmp_path, text, reserve_bytes=lambda cpus, mem: 3 * MIB)
    assert cfg.domains[0].memory_bytes == 13 * MIB


def test_reserve_bytes_gets_final_cpus_and_memory(tmp_path):
    calls = []
    load(tmp_path, "[machine]\ncpus = 2\nmemory_mib = 32\n" + MINIMAL_DOMAIN, cpus=6,
         reserve_bytes=lambda c, m: calls.append((c, m)) or 0)
    assert calls == [(6, 32 * MIB)]


def test_to_dict_is_json(tmp_path):
    (tmp_path / "k.elf").write_bytes(b"\x7fELF")
    cfg = load(tmp_path, """
        [dom0]
        kernel = "k.elf"
        cpu = 0
    """ + MINIMAL_DOMAIN)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["dom0"]["kernel"] == str((tmp_path / "k.elf").resolve())
    assert d["dom0"]["kernel_kind"] == "elf"
    assert d["dom0"]["privileged"] is True
    assert d["domains"][0]["kernel_kind"] == "bundled"
    assert d["cpus"] == 4 and len(d["clocks"]) == 4
    assert "raw" not in d


def test_cmdline_literal_braces(tmp_path):
    cfg = load(tmp_path, '[[domain]]\nkernel = "hello"\ncmdline = "x={{y}} {name}"\n')
    assert cfg.domains[0].render_cmdline(1) == "x={y} guest0"


# --------------------------------------------------------------------------- #
# Kernel path resolution


def test_kernel_relative_path_resolves_against_config_dir(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "build").mkdir()
    elf = tmp_path / "build" / "guest.elf"
    elf.write_bytes(b"\x7fELF")
    (tmp_path / "sub" / "noext").write_bytes(b"\x7fELF")
    cfgfile = tmp_path / "sub" / "m.toml"
    cfgfile.write_text(textwrap.dedent("""
        [[domain]]
        name = "a"
        kernel = "../build/guest.elf"
        [[domain]]
        name = "b"
        kernel = "./noext"
        [[domain]]
        name = "c"
        kernel = "%s"
    """ % elf))
    monkeypatch.chdir("/")  # resolution must not depend on the working directory
    cfg = load_config(cfgfile, bundled_guests=BUNDLED)
    assert [d.kernel for d in cfg.domains] == [elf.resolve(), (tmp_path / "sub" / "noext").resolve(),
                                               elf.resolve()]
    assert all(isinstance(d.kernel, Path) and not d.bundled for d in cfg.domains)


def test_bare_elf_name_is_a_path(tmp_path):
    (tmp_path / "k.elf").write_bytes(b"")
    cfg = load(tmp_path, '[[domain]]\nkernel = "k.elf"\n')
    assert cfg.domains[0].kernel == (tmp_path / "k.elf").resolve()


def test_kernel_missing_file(tmp_path):
    missing = (tmp_path / "k.elf").resolve()
    assert_error(tmp_path, """
        [[domain]]
        name = "a"
        kernel = "hello"
        [[domain]]
        name = "b"
        kernel = "hello"
        [[domain]]
        name = "c"
        kernel = "k.elf"
    """, "domain[2].kernel", f"no such file: {missing}")


def test_kernel_is_directory(tmp_path):
    (tmp_path / "d").mkdir()
    assert_error(tmp_path, '[[domain]]\nkernel = "./d"\n', "domain[0].kernel", "not a regular file")


def test_unknown_bundled_guest(tmp_path):
    e = assert_error(tmp_path, '[[domain]]\nkernel = "helo"\n', "domain[0].kernel",
                     "unknown bundled guest 'helo' (bundled: hello, spin")
    assert "domain[0].kernel: unknown bundled guest 'helo' (bundled: hello, spin" in str(e)


def test_dom0_kernel_checked(tmp_path):
    assert_error(tmp_path, '[dom0]\nkernel = "nope"\n', "dom0.kernel", "unknown bundled guest 'nope'")


# --------------------------------------------------------------------------- #
# Errors


def test_file_not_found(tmp_path):
    p = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == f"{p}: file not found"


def test_error_uses_path_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.toml").write_text("[machine]\ncpus = 0\n" + MINIMAL_DOMAIN)
    with pytest.raises(ConfigError) as ei:
        load_config("x.toml", bundled_guests=BUNDLED)
    assert str(ei.value) == "x.toml: machine.cpus: must be between 1 and 128, got 0"


@pytest.mark.parametrize("text, where", [
    ("[machine\ncpus = 4\n", "line 1, column 9"),
    ("[machine]\ncpus = = 4\n", "line 2, column 8"),
    ('[machine]\nname = "a"\nname = "b"\n', "line 3, column"),
])
def test_toml_syntax_error(tmp_path, text, where):
    e = error(tmp_path, text)
    assert e.key.startswith(where), str(e)
    assert "TOML syntax error" in str(e)
    assert "(at line" not in str(e)


def test_not_utf8(tmp_path):
    p = tmp_path / "m.toml"
    p.write_bytes(b"[machine]\nname = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(p)


def test_unknown_keys(tmp_path):
    assert_error(tmp_path, """
        [[domain]]
        kernel = "hello"
        [[domain]]
        kernel = "hello"
        name = "x"
        memry_mib = 4
    """, "domain[1].memry_mib",
        "unknown key (known: name, kernel, memory_mib, cpu, count, cmdline, bvt)")
    assert_error(tmp_path, "bogus = 1\n" + MINIMAL_DOMAIN, "bogus",
                 "unknown key (known: machine, clock, dom0, domain)")
    assert_error(tmp_path, "[machine]\ncpu = 4\n" + MINIMAL_DOMAIN, "machine.cpu", "unknown key")
    assert_error(tmp_path, "[clock]\nfreq = 4\n" + MINIMAL_DOMAIN, "clock.freq", "unknown key")
    assert_error(tmp_path, "[[clock.pcpu]]\nindex = 0\nskew = 1\n" + MINIMAL_DOMAIN,
                 "clock.pcpu[0].skew", "unknown key")
    assert_error(tmp_path, '[dom0]\nkernel = "hello"\ncount = 2\n', "dom0.count",
                 "unknown key (known: name, kernel, memory_mib, cpu, cmdline, bvt)")
    assert_error(tmp_path, '"odd key" = 1\n' + MINIMAL_DOMAIN, '"odd key"', "unknown key")


def test_expected_integer(tmp_path):
    assert_error(tmp_path, '[[domain]]\nkernel = "hello"\nmemory_mib = "four"\n',
                 "domain[0].memory_mib", "expected an integer, got 'four' (str)")
    e = assert_error(tmp_path, '[[domain]]\nkernel = "hello"\nmemory_mib = "four"\n',
                     "domain[0].memory_mib")
    assert str(e) == f"{tmp_path / 'm.toml'}: domain[0].memory_mib: expected an integer, got 'four' (str)"
    assert_error(tmp_path, "[machine]\nmemory_mib = 64.0\n" + MINIMAL_DOMAIN,
                 "machine.memory_mib", "expected an integer, got 64.0 (float)")


@pytest.mark.parametrize("snippet, key", [
    ("[machine]\ncpus = true\n" + MINIMAL_DOMAIN, "machine.cpus"),
    ("[machine]\nmemory_mib = true\n" + MINIMAL_DOMAIN, "machine.memory_mib"),
    ('[[domain]]\nkernel = "hello"\nmemory_mib = true\n', "domain[0].memory_mib"),
    ('[[domain]]\nkernel = "hello"\ncpu = true\n', "domain[0].cpu"),
    ('[[domain]]\nkernel = "hello"\ncpu = false\n', "domain[0].cpu"),
    ('[[domain]]\nkernel = "hello"\ncount = true\n', "domain[0].count"),
    ("[clock]\noffset_cycles = true\n" + MINIMAL_DOMAIN, "clock.offset_cycles"),
    ("[clock]\nfreq_mhz = true\n" + MINIMAL_DOMAIN, "clock.freq_mhz"),
    ("[clock]\ndrift_ppm = false\n" + MINIMAL_DOMAIN, "clock.drift_ppm"),
    ("[[clock.pcpu]]\nindex = true\n" + MINIMAL_DOMAIN, "clock.pcpu[0].index"),
])
def test_bools_are_not_numbers(tmp_path, snippet, key):
    e = assert_error(tmp_path, snippet, key)
    assert "(bool)" in str(e)


def test_cpus_override_bool_rejected(tmp_path):
    assert_error(tmp_path, MINIMAL_DOMAIN, "machine.cpus", "--cpus", cpus=True)
    assert_error(tmp_path, MINIMAL_DOMAIN, "machine.cpus", "--cpus", cpus=129)
    assert_error(tmp_path, MINIMAL_DOMAIN, "machine.cpus", "--cpus", cpus=0)


@pytest.mark.parametrize("snippet, key, fragment", [
    ("[machine]\ncpus = 0\n", "machine.cpus", "between 1 and 128, got 0"),
    ("[machine]\ncpus = 129\n", "machine.cpus", "between 1 and 128, got 129"),
    ("[machine]\nmemory_mib = 7\n", "machine.memory_mib", "between 8 and 4096"),
    ("[machine]\nmemory_mib = 4097\n", "machine.memory_mib", "between 8 and 4096"),
    ('[machine]\ntime_model = "xen3"\n', "machine.time_model", "'xen2', 'percpu'"),
    ('[machine]\nconsole_io = "none"\n', "machine.console_io", "'all', 'dom0'"),
    ('[machine]\nscheduler = "credit"\n', "machine.scheduler", "'bvt'"),
    ('[machine]\nname = ""\n', "machine.name", "must not be empty"),
    ("[machine]\nname = 3\n", "machine.name", "expected a string, got 3 (int)"),
    ("[clock]\nfreq_mhz = 0\n", "clock.freq_mhz", "greater than 0"),
    ("[clock]\nfreq_mhz = -5.0\n", "clock.freq_mhz", "greater than 0"),
    ("[clock]\nfreq_mhz = inf\n", "clock.freq_mhz", "finite"),
    ("[clock]\nfreq_mhz = nan\n", "clock.freq_mhz", "finite"),
    ('[clock]\nfreq_mhz = "2000"\n', "clock.freq_mhz", "expected a number"),
    ("[clock]\noffset_cycles = -1\n", "clock.offset_cycles", "at least 0"),
    ("[clock]\noffset_cycles = 1.5\n", "clock.offset_cycles", "expected an integer"),
    ("[clock]\ndrift_ppm = 1000.5\n", "clock.drift_ppm", "between -1000.0 and 1000.0"),
    ("[clock]\ndrift_ppm = -1001\n", "clock.drift_ppm", "between -1000.0 and 1000.0"),
    ("[[clock.pcpu]]\nfreq_mhz = 1\n", "clock.pcpu[0].index", "required key missing"),
    ("[[clock.pcpu]]\nindex = 4\n", "clock.pcpu[0].index", "PCPU 4 out of range"),
    ("[[clock.pcpu]]\nindex = -1\n", "clock.pcpu[0].index", "at least 0"),
    ("[[clock.pcpu]]\nindex = 1\n[[clock.pcpu]]\nindex = 1\n", "clock.pcpu[1].index",
     "already set by clock.pcpu[0]"),
    ("[[clock.pcpu]]\nindex = 1\ndrift_ppm = 2000\n", "clock.pcpu[0].drift_ppm", "between"),
    ("[clock]\npcpu = 3\n", "clock.pcpu", "expected an array of tables"),
    ("machine = 3\n", "machine", "expected a table, got 3 (int)"),
    ("clock = [1]\n", "clock", "expected a table"),
    ("dom0 = 1\n", "dom0", "expected a table"),
])
def test_machine_and_clock_errors(tmp_path, snippet, key, fragment):
    assert_error(tmp_path, snippet + MINIMAL_DOMAIN, key, fragment)


@pytest.mark.parametrize("entry, key, fragment", [
    ('name = "a"\n', "domain[0].kernel", "required key missing"),
    ('kernel = ""\n', "domain[0].kernel", "must not be empty"),
    ("kernel = 5\n", "domain[0].kernel", "expected a string"),
    ('kernel = "hello"\nmemory_mib = 0\n', "domain[0].memory_mib", "between 1 and 1024"),
    ('kernel = "hello"\nmemory_mib = 1025\n', "domain[0].memory_mib", "between 1 and 1024"),
    ('kernel = "hello"\ncount = 0\n', "domain[0].count", "at least 1"),
    ('kernel = "hello"\ncount = "many"\n', "domain[0].count", 'expected an integer or "per_cpu"'),
    ('kernel = "hello"\ncount = 1.0\n', "domain[0].count", 'expected an integer or "per_cpu"'),
    ('kernel = "hello"\ncpu = "any"\n', "domain[0].cpu", 'expected a PCPU index or "auto"'),
    ('kernel = "hello"\ncpu = -1\n', "domain[0].cpu", "at least 0"),
    ('kernel = "hello"\ncpu = 4\n', "domain[0].cpu", "PCPU 4 out of range: the machine has 4 CPUs"),
    ('kernel = "hello"\ncount = "per_cpu"\ncpu = 1\n', "domain[0].cpu", "per_cpu"),
    ('kernel = "hello"\nname = ""\n', "domain[0].name", "must not be empty"),
    ('kernel = "hello"\nname = "g{domid}"\n', "domain[0].name", "unknown placeholder {domid}"),
    ('kernel = "hello"\nname = "g{index:02d}"\n', "domain[0].name", "format spec"),
    ('kernel = "hello"\nname = "g{index"\n', "domain[0].name", "bad placeholder syntax"),
    ('kernel = "hello"\nname = "a\\nb"\n', "domain[0].name", "control characters"),
    ('kernel = "hello"\ncmdline = 3\n', "domain[0].cmdline", "expected a string"),
    ('kernel = "hello"\ncmdline = "x{cpu}"\n', "domain[0].cmdline",
     "unknown placeholder {cpu} (allowed: {domid}, {name}, {index}"),
    ('kernel = "hello"\ncmdline = "x{}"\n', "domain[0].cmdline", "unknown placeholder {}"),
    ('kernel = "hello"\ncmdline = "x{0}"\n', "domain[0].cmdline", "unknown placeholder {0}"),
    ('kernel = "hello"\ncmdline = "x{domid!r}"\n', "domain[0].cmdline", "conversion"),
    ('kernel = "hello"\ncmdline = "x}"\n', "domain[0].cmdline", "bad placeholder syntax"),
    ('kernel = "hello"\ncmdline = "a\\u0000b"\n', "domain[0].cmdline", "NUL"),
    ('kernel = "hello"\ncmdline = "%s"\n' % ("x" * 256), "domain[0].cmdline",
     "256 bytes long, the limit is 255"),
    ('kernel = "hello"\ncmdline = "%s"\n' % ("é" * 128), "domain[0].cmdline",
     "256 bytes long, the limit is 255"),
    ('kernel = "hello"\ncmdline = "%s{domid}"\n' % ("x" * 250), "domain[0].cmdline",
     "257 bytes long, the limit is 255"),
])
def test_domain_errors(tmp_path, entry, key, fragment):
    assert_error(tmp_path, "[[domain]]\n" + entry, key, fragment)


def test_cmdline_at_limit_ok(tmp_path):
    cfg = load(tmp_path, '[[domain]]\nkernel = "hello"\ncmdline = "%s"\n' % ("x" * 255))
    assert len(cfg.domains[0].cmdline_template) == 255
    cfg = load(tmp_path, '[[domain]]\nkernel = "hello"\ncmdline = "%s{domid}"\n' % ("x" * 248))
    assert len(cfg.domains[0].render_cmdline(32751)) == 253
    # The rendered line may reach 255 bytes exactly: 249 + len("guest0").
    cfg = load(tmp_path, '[[domain]]\nkernel = "hello"\ncmdline = "%s{name}"\n' % ("x" * 249))
    assert len(cfg.domains[0].render_cmdline(1)) == 255


def test_cmdline_name_expansion_too_long(tmp_path):
    e = assert_error(tmp_path, """
        [[domain]]
        kernel = "hello"
        name = "%s"
        cmdline = "%s{name}"
    """ % ("n" * 50, "x" * 240), "domain[0].cmdline", "expands to up to 290 bytes")
    assert "'" + "n" * 50 + "'" in str(e)


def test_dom0_errors(tmp_path):
    assert_error(tmp_path, "[dom0]\nname = \"d\"\n", "dom0.kernel", "required key missing")
    assert_error(tmp_path, '[dom0]\nkernel = "hello"\ncpu = 9\n', "dom0.cpu", "PCPU 9 out of range")
    assert_error(tmp_path, '[dom0]\nkernel = "hello"\nmemory_mib = "x"\n', "dom0.memory_mib",
                 "expected an integer")
    assert_error(tmp_path, '[dom0]\nkernel = "hello"\ncmdline = "{foo}"\n', "dom0.cmdline",
                 "unknown placeholder {foo}")


def test_domain_not_array(tmp_path):
    assert_error(tmp_path, '[domain]\nkernel = "hello"\n', "domain", "expected an array of tables")
    assert_error(tmp_path, "domain = [1]\n", "domain[0]", "expected a table, got 1 (int)")


def test_cpu_out_of_range_after_override(tmp_path):
    text = "[machine]\ncpus = 8\n[[domain]]\nkernel = \"hello\"\ncpu = 5\n"
    assert load(tmp_path, text).domains[0].cpu == 5
    assert load(tmp_path, text, cpus=6).domains[0].cpu == 5
    e = assert_error(tmp_path, text, "domain[0].cpu", "PCPU 5 out of range", cpus=4)
    assert "--cpus 4 overrides machine.cpus = 8" in str(e)
    assert_error(tmp_path, '[dom0]\nkernel = "hello"\ncpu = 3\n', "dom0.cpu", "out of range", cpus=2)
    assert_error(tmp_path, "[machine]\ncpus = 8\n[[clock.pcpu]]\nindex = 7\n" + MINIMAL_DOMAIN,
                 "clock.pcpu[0].index", "PCPU 7 out of range", cpus=4)


def test_duplicate_names(tmp_path):
    assert_error(tmp_path, """
        [[domain]]
        name = "a"
        kernel = "hello"
        [[domain]]
        name = "a"
        kernel = "spin"
    """, "domain[1].name", "duplicate domain name 'a' (also domain[0])")
    assert_error(tmp_path, """
        [[domain]]
        name = "w"
        kernel = "hello"
        count = 2
    """, "domain[0].name", "duplicate domain name 'w'", "put {index} in its name")
    assert_error(tmp_path, """
        [dom0]
        kernel = "hello"
        [[domain]]
        name = "dom0"
        kernel = "hello"
    """, "domain[0].name", "duplicate domain name 'dom0' (also dom0)")
    assert_error(tmp_path, """
        [[domain]]
        kernel = "hello"
        count = 3
        [[domain]]
        name = "guest2"
        kernel = "hello"
    """, "domain[1].name", "duplicate domain name 'guest2' (also domain[0] instance 2)")
    # Default names collide too: two entries both default to guest{index}.
    assert_error(tmp_path, MINIMAL_DOMAIN + MINIMAL_DOMAIN, "domain[1].name",
                 "duplicate domain name 'guest0'")


def test_total_memory(tmp_path):
    text = """
        [machine]
        memory_mib = 64
        [dom0]
        kernel = "hello"
        memory_mib = 8
        [[domain]]
        kernel = "hello"
        memory_mib = 48
        count = 4
    """
    e = assert_error(tmp_path, text, "domain", reserve_bytes=lambda c, m: 3 * MIB)
    assert str(e) == (f"{tmp_path / 'm.toml'}: domain: total domain memory 200 MiB exceeds "
                      "the 64 MiB machine less 3 MiB reserved for the hypervisor")


def test_total_memory_reserve_default_zero(tmp_path):
    text = "[machine]\nmemory_mib = 16\n[[domain]]\nkernel = \"hello\"\nmemory_mib = 16\n"
    assert load(tmp_path, text).domains[0].memory_bytes == 16 * MIB
    assert_error(tmp_path, text, "domain", "less 1 MiB reserved",
                 reserve_bytes=lambda c, m: MIB)
    assert_error(tmp_path, text, "domain", "less 0.50 MiB reserved",
                 reserve_bytes=lambda c, m: MIB // 2)


def test_total_memory_per_cpu_follows_override(tmp_path):
    text = "[machine]\nmemory_mib = 32\n[[domain]]\nkernel = \"hello\"\ncount = \"per_cpu\"\n"
    assert len(load(tmp_path, text, cpus=8).domains) == 8
    assert_error(tmp_path, text, "domain", "total domain memory 36 MiB exceeds", cpus=9)


def test_huge_count_is_a_memory_error_not_a_hang(tmp_path):
    assert_error(tmp_path, '[[domain]]\nkernel = "hello"\ncount = 1_000_000_000_000\n',
                 "machine.memory_mib", "above the 4096 MiB")      # memory_mib is "auto" by default
    assert_error(tmp_path, '[machine]\nmemory_mib = 64\n[[domain]]\nkernel = "hello"\n'
                           'count = 1_000_000_000_000\n', "domain", "total domain memory")


def test_nothing_to_run(tmp_path):
    assert_error(tmp_path, "[machine]\ncpus = 2\n", "domain", "nothing to run")
    assert_error(tmp_path, "", "domain", "nothing to run")
    assert_error(tmp_path, "domain = []\n", "domain", "nothing to run")


def test_specs_are_frozen(tmp_path):
    cfg = load(tmp_path, MINIMAL_DOMAIN)
    with pytest.raises(Exception):
        cfg.domains[0].cpu = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Properties


@settings(max_examples=60, deadline=None)
@given(
    file_cpus=st.integers(1, 128),
    override=st.one_of(st.none(), st.integers(1, 64)),
    mem=st.integers(1, 4),
    count=st.one_of(st.just("per_cpu"), st.integers(1, 4)),
)
def test_expansion_property(tmp_path_factory, file_cpus, override, mem, count):
    tmp = tmp_path_factory.mktemp("p")
    count_toml = '"per_cpu"' if count == "per_cpu" else str(count)
    p = tmp / "m.toml"
    p.write_text(f"[machine]\ncpus = {file_cpus}\nmemory_mib = 4096\n"
                 f"[[domain]]\nname = \"d{{index}}\"\nkernel = \"spin\"\n"
                 f"memory_mib = {mem}\ncount = {count_toml}\n")
    cfg = load_config(p, cpus=override, bundled_guests=BUNDLED)
    ncpus = override if override is not None else file_cpus
    n = ncpus if count == "per_cpu" else count
    assert cfg.cpus == ncpus and len(cfg.clocks) == ncpus
    assert [d.name for d in cfg.domains] == [f"d{i}" for i in range(n)]
    assert [d.index for d in cfg.domains] == list(range(n))
    if count == "per_cpu":
        assert [d.cpu for d in cfg.domains] == list(range(n))
    else:
        assert all(d.cpu is None for d in cfg.domains)
    assert sum(d.memory_bytes for d in cfg.domains) == n * mem * MIB


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_error_messages_are_one_line(tmp_path_factory, junk):
    tmp = tmp_path_factory.mktemp("j")
    p = tmp / "m.toml"
    p.write_text(junk, encoding="utf-8")
    try:
        load_config(p, bundled_guests=BUNDLED)
    except ConfigError as e:
        assert "\n" not in str(e) and "\r" not in str(e)
        assert str(e).startswith(f"{p}: ")


def test_config_error_pickles(tmp_path):
    import pickle
    e = error(tmp_path, "[machine]\ncpus = 0\n" + MINIMAL_DOMAIN)
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) and e2.key == e.key and e2.reason == e.reason


def test_bvt_parameters(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[[domain]]\nkernel = "hello"\nbvt = { mcu_advance = 20, warpback = true, '
                 'warp_value = 1000, warpl_ms = 10, warpu_ms = 50 }\n')
    cfg = load_config(p, bundled_guests=frozenset({"hello"}))
    assert cfg.domains[0].bvt == {"mcu_advance": 20, "warpback": 1, "warp_value": 1000,
                                  "warpl_ms": 10, "warpu_ms": 50}
    p.write_text('[[domain]]\nkernel = "hello"\nbvt = { mcu_advance = 0 }\n')
    with pytest.raises(ConfigError, match=r"domain\[0\]\.bvt\.mcu_advance"):
        load_config(p, bundled_guests=frozenset({"hello"}))
    p.write_text('[[domain]]\nkernel = "hello"\nbvt = { weight = 3 }\n')
    with pytest.raises(ConfigError, match=r"domain\[0\]\.bvt\.weight: unknown key"):
        load_config(p, bundled_guests=frozenset({"hello"}))


# --------------------------------------------------------------------------- #
# The machine's real limits (each refused at load, not later in a PCPU)

from smpxen.config import MAX_DOMAINS, MAX_FREQ_MHZ, MIN_FREQ_MHZ  # noqa: E402


@pytest.mark.parametrize("snippet, ok", [
    ("freq_mhz = 2\n", True),
    ("freq_mhz = 20000\n", True),
    ("freq_mhz = 5000.0\n", True),
    ("freq_mhz = 1.999\n", False),
    ("freq_mhz = 20000.5\n", False),
    ("freq_mhz = 1%s\n" % ("0" * 400), False),     # an int too big for a float
    ("offset_cycles = 18446744073709551615\n", True),
    ("offset_cycles = 18446744073709551616\n", False),
])
def test_counter_range(tmp_path, snippet, ok):
    text = "[[clock.pcpu]]\nindex = 1\n" + snippet + MINIMAL_DOMAIN
    if ok:
        load(tmp_path, text)
        return
    key = "clock.pcpu[0]." + snippet.split(" ")[0]
    e = assert_error(tmp_path, text, key)
    if "freq" in key:
        assert f"between {MIN_FREQ_MHZ} and {MAX_FREQ_MHZ}" in str(e) and "cpu_khz" in str(e)
        assert len(str(e)) < 400                  # the 401-digit value is shortened
    else:
        assert "64 bits" in str(e)


def test_domain_table_size(tmp_path):
    many = '[[domain]]\nname = "g{index}"\nkernel = "hello"\nmemory_mib = 1\ncount = %d\n'
    big = "[machine]\nmemory_mib = 4096\n"
    assert len(load(tmp_path, big + many % MAX_DOMAINS).domains) == MAX_DOMAINS
    e = assert_error(tmp_path, big + '[dom0]\nkernel = "hello"\nmemory_mib = 1\n' + many % MAX_DOMAINS,
                     "domain[0].count", f"makes {MAX_DOMAINS + 1} domains with dom0",
                     f"domain table holds {MAX_DOMAINS}")
    # The entry that goes past the limit is named, without count when it has none.
    text = big + many % MAX_DOMAINS + '[[domain]]\nname = "last"\nkernel = "hello"\nmemory_mib = 1\n'
    assert_error(tmp_path, text, "domain[1]", f"makes {MAX_DOMAINS + 1} domains")
    assert_error(tmp_path, big + many % 200, "domain[0].count", "makes 200 domains", max_domains=128)
    assert len(load(tmp_path, big + many % 5, max_domains=5).domains) == 5
    assert_error(tmp_path, big + many % 5, "domain[0].count", "makes 5 domains", max_domains=4)


def test_per_domain_overhead_counts_against_free_memory(tmp_path):
    text = "[machine]\nmemory_mib = 16\n[[domain]]\nkernel = \"hello\"\nmemory_mib = 15\n"
    # 15 MiB + 8 KiB free: the domain and its 8 KiB fit exactly, 12 KiB do not.
    assert load(tmp_path, text, reserve_bytes=lambda c, m: MIB - 8192, domain_overhead_bytes=8192)
    e = assert_error(tmp_path, text, "domain", reserve_bytes=lambda c, m: MIB - 8192,
                     domain_overhead_bytes=12288)
    assert str(e) == (f"{tmp_path / 'm.toml'}: domain: total domain memory 15 MiB plus 12 KiB "
                      "the hypervisor takes for 1 domain (12 KiB each) exceeds the 16 MiB "
                      "machine less 0.99 MiB reserved for the hypervisor")
    e = assert_error(tmp_path, text.replace("memory_mib = 15", "memory_mib = 5\ncount = 3"),
                     "domain", "total domain memory 15 MiB plus 24 KiB the hypervisor takes for "
                               "3 domains (8 KiB each)",
                     reserve_bytes=lambda c, m: MIB, domain_overhead_bytes=8192)


@pytest.mark.parametrize("text, key, fragment", [
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", None, "nested too deeply"),
    ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", None, "nested too deeply"),
    ("[machine]\ncpus = 1%s\n" % ("0" * 5000), None, "more than 4300 digits"),
    ('[[domain]]\nkernel = "hello"\ncount = 1%s\n' % ("0" * 4000), "machine.memory_mib",
     '"auto" needs more than 10^15 MiB'),
    ('[machine]\nmemory_mib = 64\n[[domain]]\nkernel = "hello"\ncount = 1%s\n' % ("0" * 4000),
     "domain", "total domain memory more than 10^15 MiB"),
    ('[[domain]]\nkernel = "hello"\ncpu = 1%s\n' % ("0" * 4000), "domain[0].cpu", "out of range"),
    ('[[domain]]\nkernel = "%s.elf"\n' % ("a/" * 3000), "domain[0].kernel", "File name too long"),
    ('[[domain]]\nkernel = "~no-such-user-here/k.elf"\n', "domain[0].kernel", "bad path"),
])
def test_extreme_documents_are_config_errors(tmp_path, text, key, fragment):
    e = assert_error(tmp_path, text, key, fragment)
    assert len(str(e)) < 400, str(e)


# --------------------------------------------------------------------------- #
# machine.memory_mib = "auto"


@pytest.mark.parametrize("cpus", [1, 4, 16, 64, 128])
def test_auto_memory_is_just_enough_for_the_default_machine(cpus):
    from smpxen.domain.builder import DOMAIN_EXTRA_FRAMES
    from smpxen.shm.layout import Layout
    cfg = load_config(CONFIGS / "default.toml", cpus=cpus, bundled_guests=BUNDLED,
                      reserve_bytes=Layout.reserve_bytes, domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * 4096)
    need = sum(d.memory_bytes + DOMAIN_EXTRA_FRAMES * 4096 for d in cfg.all_domains)
    assert cfg.memory_bytes % (4 * MIB) == 0
    assert need + Layout.reserve_bytes(cpus, cfg.memory_bytes) <= cfg.memory_bytes
    smaller = cfg.memory_bytes - 4 * MIB
    assert smaller < 8 * MIB or need + Layout.reserve_bytes(cpus, smaller) > smaller


def test_auto_memory_beyond_the_machine_limit_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match=r'machine\.memory_mib: "auto" needs .* above the 4096 MiB'):
        load(tmp_path, '[machine]\ncpus = 8\nmemory_mib = "auto"\n[[domain]]\nkernel = "hello"\n'
                       'memory_mib = 1000\ncount = 5\n')
    with pytest.raises(ConfigError, match=r'machine\.memory_mib: expected an integer or "auto", got \'lots\''):
        load(tmp_path, '[machine]\nmemory_mib = "lots"\n[[domain]]\nkernel = "hello"\n')
