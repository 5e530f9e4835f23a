"""`--set KEY=VALUE` (smpxen/config/overrides.py): the raw TOML is changed before
the loader checks it, and errors name the key in one line."""
import pytest

from smpxen.config import ConfigError, load_config
from smpxen.config.overrides import apply_overrides, loader_key, parse_value, set_origin
from smpxen.testing import write_config
from support.configs import BASE


def test_values_parse_as_toml_or_plain_strings():
    assert parse_value("3000") == 3000
    assert parse_value("1.5") == 1.5
    assert parse_value("true") is True
    assert parse_value("percpu") == "percpu"
    assert parse_value('"200"') == "200"
    assert parse_value("{ mcu_advance = 20 }") == {"mcu_advance": 20}
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("") == ""
    assert parse_value("1\nw = 2") == "1\nw = 2"          # not one value: the text
    # String-only keys take a bare number as its text; other keys do not.
    assert parse_value("200000", "domain.0.cmdline") == "200000"
    assert parse_value("200000", "domain.0.memory_mib") == 200000
    assert parse_value('"quoted"', "dom0.name") == "quoted"


def test_dotted_paths_tables_and_arrays_of_tables():
    raw = {"machine": {"cpus": 2}, "domain": [{"name": "a"}, {"name": "b"}]}
    out = apply_overrides(raw, ["machine.time_model=percpu", "domain.1.cmdline=7",
                                "clock.pcpu.0.index=1", "clock.pcpu.0.drift_ppm=-50",
                                "clock.freq_mhz=3000", "domain.2={ name = 'c', kernel = 'spin' }"])
    assert out == {"machine": {"cpus": 2, "time_model": "percpu"},
                   "domain": [{"name": "a"}, {"name": "b", "cmdline": "7"},
                              {"name": "c", "kernel": "spin"}],
                   "clock": {"pcpu": [{"index": 1, "drift_ppm": -50}], "freq_mhz": 3000}}
    assert raw == {"machine": {"cpus": 2}, "domain": [{"name": "a"}, {"name": "b"}]}  # a copy


@pytest.mark.parametrize("item, reason", [
    ("domain.5.cmdline=x", "--set domain.5.cmdline: domain has 2 entries; index 5 is out of range "
                           "(use 0..1 to change one, 2 to add one)"),
    ("domain.name=x", "--set domain.name: domain is an array (2 entries); give an index"),
    ("machine.cpus.x=1", "--set machine.cpus.x: machine.cpus is a value (2), not a table"),
    ("nokey", "--set: expected KEY=VALUE, got 'nokey'"),
    ("=3", "--set: no key before '='"),
    ("machine..cpus=3", "--set: empty part in key"),
])
def test_bad_paths_are_one_line_errors_naming_the_key(item, reason):
    with pytest.raises(ConfigError) as e:
        apply_overrides({"machine": {"cpus": 2}, "domain": [{}, {}]}, [item], "m.toml")
    assert str(e.value).startswith("m.toml: " + reason)
    assert "\n" not in str(e.value)


def test_loader_checks_what_set_gives(tmp_path):
    path = write_config(tmp_path, BASE)
    cfg = load_config(path, bundled_guests={"hello", "spin"},
                      overrides=["machine.cpus=3", "domain.1.kernel=spin", "domain.1.cmdline=99",
                                 "domain.0.cpu=2", "machine.time_model=percpu"])
    assert (cfg.cpus, cfg.time_model) == (3, "percpu")
    assert [(d.name, d.kernel, d.cmdline_template, d.cpu) for d in cfg.domains] == \
        [("a", "hello", "", 2), ("b", "spin", "99", None)]
    with pytest.raises(ConfigError) as e:
        load_config(path, bundled_guests={"hello"}, overrides=["domain.0.cpu=2"])
    assert e.value.key == "domain[0].cpu"
    assert set_origin(e.value.key, ["machine.cpus=2", "domain.0.cpu=2"]) == "domain.0.cpu=2"
    assert set_origin("machine.cpus", ["domain.0.cpu=2"]) is None
    assert loader_key("clock.pcpu.1.drift_ppm") == "clock.pcpu[1].drift_ppm"
