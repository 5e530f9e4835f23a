"""Tests by cost: tests/unit/ run in this process in seconds; everything else
(tests/machine/) starts processes and carries the `machine` marker, so
`pytest -m "not machine"` runs the unit tests alone."""
import os
from pathlib import Path

import psutil
import pytest

from smpxen import testing

UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items):
    for item in items:
        if UNIT not in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.machine)


def _our_processes():
    """smpxen processes started by this test process (tagged through the environment;
    PCPUs inherit the tag, so orphans are found too)."""
    me = str(os.getpid())
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if "smpxen" not in cmd or p.info["pid"] == os.getpid():
                continue
            if p.environ().get(testing.OWNER_ENV) == me and p.status() != psutil.STATUS_ZOMBIE:
                out.append((p.info["pid"], cmd[:100]))
        except psutil.Error:
            continue
    return out


def _our_segments(pids):
    prefixes = tuple(f"smpxen-{pid}-" for pid in pids)
    return sorted(n for n in os.listdir("/dev/shm") if prefixes and n.startswith(prefixes))


@pytest.fixture
def no_leaks():
    """Fails the test if a machine it started left processes or /dev/shm segments behind."""
    first = len(testing.started_machines)
    yield
    _check_leaks(first)


@pytest.fixture(scope="module")
def no_leaks_module():
    """no_leaks for a module-scoped fixture that starts a machine its tests share: the
    check runs when the module's tests are done (a leak is an error at teardown)."""
    first = len(testing.started_machines)
    yield
    _check_leaks(first)


def _check_leaks(first: int) -> None:
    machines = testing.started_machines[first:]
    leaked_shm = _our_segments(machines)
    leaked_procs = _our_processes()
    for pid, _ in leaked_procs:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    for name in leaked_shm:
        os.unlink(os.path.join("/dev/shm", name))
    assert not leaked_shm, f"shared-memory segments left behind: {leaked_shm}"
    assert not leaked_procs, f"processes left behind: {leaked_procs}"
