"""The Unicorn corrections that make every guest instruction run exactly once
(smpxen.pcpu.ucpatch), checked with the probes that show the faults."""
import importlib.util
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

from smpxen.pcpu.ucpatch import no_exit_request_offset

PROBES = Path(__file__).resolve().parents[2] / "scripts" / "probes"


def load_probe(name: str):
    spec = importlib.util.spec_from_file_location(name, PROBES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_switch_is_found_once_and_only_after_initialisation():
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x1000)          # any call initialises the engine
    first = no_exit_request_offset(uc._uch)
    other = Uc(UC_ARCH_X86, UC_MODE_32)
    other.mem_map(0, 0x1000)
    assert no_exit_request_offset(other._uch) == first


@pytest.mark.timeout(60)
def test_asynchronous_stops_never_repeat_a_store():
    assert load_probe("stop_rollback").drift(400, corrected=True) == 0


@pytest.mark.timeout(60)
def test_an_eip_written_in_the_hook_survives_later_stops():
    assert load_probe("hook_eip_write").excess_handler_runs(3.0, batch=True) == 0
