"""What `xm create` builds (smpxen/control/domfile.py): paths resolved where the
user means them, and every mistake one line naming where it is."""
from pathlib import Path

import pytest

from smpxen.config.schema import ConfigError, MIB
from smpxen.control.domfile import config_error, load, parse_create_args
from smpxen.control.endpoint import XmError

BUNDLED = {"idle", "hello"}


def _load(args, cwd: Path, ncpus=2):
    target, opts = parse_create_args(args)
    return load(target, opts, lambda p: str(cwd / p), ncpus, BUNDLED)


def _error(args, cwd: Path) -> str:
    with pytest.raises(ConfigError) as e:
        _load(args, cwd)
    return str(config_error(e.value))


def test_a_kernel_with_options(tmp_path):
    spec = _load(["idle", "--name", "web", "--memory", "2", "--cpu", "1", "--cmdline", "w {domid} {name}"],
                 tmp_path)
    assert (spec.name, spec.kernel, spec.memory_bytes, spec.cpu) == ("web", "idle", 2 * MIB, 1)
    assert spec.render_cmdline(7) == "w 7 web"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "k.elf").write_bytes(b"")
    spec = _load(["sub/k.elf"], tmp_path)               # relative to the client's directory
    assert (spec.kernel, spec.name, spec.cpu) == (tmp_path / "sub" / "k.elf", "k", -1)


def test_a_domain_file_and_options_over_it(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "k.elf").write_bytes(b"")
    (tmp_path / "d" / "web.toml").write_text('[domain]\nname = "web"\nkernel = "k.elf"\nmemory_mib = 3\n'
                                             'bvt = { mcu_advance = 30 }\n')
    spec = _load(["d/web.toml", "--memory", "5"], tmp_path)
    assert spec.kernel == tmp_path / "d" / "k.elf"      # relative to the file
    assert (spec.name, spec.memory_bytes, spec.bvt) == ("web", 5 * MIB, {"mcu_advance": 30})


def test_mistakes_are_one_line_naming_the_key_once(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "b"\nkernel = "idle"\nmemroy_mib = 4\n')
    assert _error(["idle", "--memory", "0"], tmp_path) == "create: memory_mib: must be between 1 and 1024, got 0"
    assert _error(["idle", "--cpu", "2"], tmp_path) == ("create: cpu: must be between 0 and 1, got 2 "
                                                        "(the machine has 2 CPUs)")
    assert _error(["idle", "--name", "a\nb"], tmp_path).startswith("create: name: 'a\\nb': at most 31 bytes")
    assert _error(["bad.toml"], tmp_path).startswith(f"create: {tmp_path / 'bad.toml'}: memroy_mib: unknown key")
    assert _error(["none.toml"], tmp_path) == f"create: {tmp_path / 'none.toml'}: file not found"
    for args in ([], ["idle", "--memory"], ["idle", "--memory", "x"], ["idle", "--bogus", "1"]):
        with pytest.raises(XmError) as e:
            parse_create_args(args)
        assert str(e.value).startswith("create: ") and "\n" not in str(e.value)
