"""Reaching a running machine's trace buffers from another process, for `smpxen
xentrace`: the machine's control endpoint (smpxen/control/xm.py finds it, as for
`smpxen xm`) answers the `tbufs` verb (smpxen/trace/xm_verbs.py) with
DOM0_GETTBUFS's answer and where machine RAM can be opened: /proc/<pid>/fd/<n> of
the machine process, whose segment's /dev/shm name is gone (smpxen/shm/ram.py).
Opening that path needs the machine's user, as Xen's xentrace needs Domain-0."""
from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass


class AttachError(Exception):
    pass


@dataclass(frozen=True)
class RunningMachine:
    pid: int                  # the machine process
    ram: str                  # /proc/<pid>/fd/<n>: opening it opens machine RAM
    ram_bytes: int
    mach_addr: int            # DOM0_GETTBUFS: PCPU 0's buffer
    size: int                 # bytes per buffer
    nr_pcpus: int
    via: str                  # how the answer was had


def find(machine: str | None) -> RunningMachine:
    """The machine (--machine TAG or pid; None: the only one running) and its
    trace buffers, or AttachError (one line)."""
    from smpxen.control.xm import NoMachine, find_machine, request
    try:
        endpoint, pid = find_machine(machine)
    except NoMachine as e:
        raise AttachError(str(e)) from None
    ok, text, error = request(endpoint, "tbufs", [], pid=pid)
    if not ok:
        raise AttachError(f"machine {pid}: {error}")
    a = json.loads(text)
    return RunningMachine(a["pid"], a["ram"], a["ram_bytes"], a["mach_addr"], a["size"], a["nr_pcpus"], a["via"])


def open_ram(machine: RunningMachine):
    """(fd, mmap) of the machine's RAM, read-write (the reader moves the tails)."""
    try:
        fd = os.open(machine.ram, os.O_RDWR)
    except OSError as e:
        raise AttachError(f"cannot open machine {machine.pid}'s RAM: {e.strerror or e}") from None
    try:
        return fd, mmap.mmap(fd, machine.ram_bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError) as e:
        os.close(fd)
        raise AttachError(f"cannot map machine {machine.pid}'s RAM: {e}") from None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
