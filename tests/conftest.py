import os

import psutil
import pytest


def _smpxen_processes():
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if p.info["pid"] != me and ("smpxen.pcpu" in cmd or " -m smpxen up" in cmd):
            out.append((p.info["pid"], cmd[:100]))
    return out


def _shm_segments():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith("smpxen-"))


@pytest.fixture
def no_leaks():
    """Fails the test if it left smpxen processes or /dev/shm segments behind."""
    before_shm = set(_shm_segments())
    yield
    leaked_shm = set(_shm_segments()) - before_shm
    leaked_procs = _smpxen_processes()
    for pid, _ in leaked_procs:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    for name in leaked_shm:
        os.unlink(os.path.join("/dev/shm", name))
    assert not leaked_shm, f"shared-memory segments left behind: {leaked_shm}"
    assert not leaked_procs, f"processes left behind: {leaked_procs}"
