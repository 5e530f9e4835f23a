"""Starting the PCPU processes: forks of the machine process, made after it has
imported everything a PCPU runs (Unicorn, ZeroMQ, the hypervisor) and before it
starts any thread or ZeroMQ context. A fresh interpreter per PCPU spent ~0.25 s of
CPU importing, so 64 PCPUs needed 30 s to come online on a 2-core host; a fork
starts with all of it loaded, and shares the parent's pages until it writes them.

PcpuProcess is the part of subprocess.Popen the machine uses (pid, poll, wait,
kill, returncode)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def preload() -> None:
    """Import what a PCPU runs, once, in the machine process."""
    import smpxen.pcpu.__main__  # noqa: F401
    import smpxen.pcpu.loop  # noqa: F401


class PcpuProcess:
    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)   # -N: killed by signal N
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        give_up = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if give_up is not None and time.monotonic() > give_up:
                raise subprocess.TimeoutExpired(f"pcpu pid {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def fork_pcpu(boot: dict) -> PcpuProcess:
    """A child running PCPU boot["index"] until it halts; the parent gets its handle."""
    from smpxen.pcpu.__main__ import run
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return PcpuProcess(pid)
    code = 70
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        code = run(boot)
    except BaseException:           # never return into the machine's code in a child
        pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
