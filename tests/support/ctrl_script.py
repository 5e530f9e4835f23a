"""Run a machine whose domain controller (smpxen/machine/controller.py) follows a
script, for the machine tests: the controller is called from inside the machine
process, between its reads of the inbox, as `smpxen xm` verbs are.

    python tests/support/ctrl_script.py CONFIG REPORT SCRIPT_JSON [--migrate NAME:MS]...

SCRIPT_JSON is a list of steps, each done once the one before it is:
    ["wait", domid, text]        until a console line of domid contains text
    ["call", method, args...]    controller.method(*args); strings given for bytes
                                 arguments are encoded; shutdown and mem_set get a
                                 callback whose result is printed
Every call prints one JSON line on stdout: {"call": ..., "returned"|"error"|"result": ...}.
"""
from __future__ import annotations

import json
import sys
import time

from smpxen.config import load_config
from smpxen.domain.builder import DOMAIN_EXTRA_FRAMES
from smpxen.guests.assemble import bundled_guest_names
from smpxen.machine.controller import ControlError
from smpxen.machine.machine import Machine, RunOptions
from smpxen.shm.layout import MAX_DOMAINS, Layout
from smpxen.xen.arch_x86_32 import PAGE_SIZE

POLL_S = 0.01


def say(**kw) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class ScriptDriver:
    """A machine driver (as smpxen/machine/experiments.py's): due() and fire()."""

    def __init__(self, machine, steps):
        self.m = machine
        self.steps = list(steps)
        self.next = time.monotonic()

    def due(self) -> float:
        return self.next if self.steps else time.monotonic() + 3600

    def fire(self, _outboxes) -> None:
        self.next = time.monotonic() + POLL_S
        while self.steps:
            step = self.steps[0]
            if step[0] == "wait":
                lines = self.m.console.lines.get(step[1], ())
                if not any(step[2] in line for line in lines):
                    return
            else:
                self._call(step[1], step[2:])
            self.steps.pop(0)

    def _call(self, method, args) -> None:
        args = [a.encode() if isinstance(a, str) and method == "console_input" else a for a in args]
        if method in ("shutdown", "mem_set"):
            args.append(lambda result: say(call=method, result=result))
        try:
            got = getattr(self.m.controller, method)(*args)
        except ControlError as e:
            say(call=method, error=str(e))
            return
        if method == "console_input":
            say(call=method, returned=got)


def main(argv) -> int:
    config, report, script = argv[:3]
    migrate = []
    for i in range(3, len(argv) - 1, 2):
        if argv[i] == "--migrate":
            name, ms = argv[i + 1].split(":")
            migrate.append((name, float(ms)))
    cfg = load_config(config, bundled_guests=bundled_guest_names(), reserve_bytes=Layout.reserve_bytes,
                      domain_overhead_bytes=DOMAIN_EXTRA_FRAMES * PAGE_SIZE, max_domains=MAX_DOMAINS)
    machine = Machine(cfg, RunOptions(report=report, timeout=60, migrate=migrate, stream=sys.stderr))
    start_drivers = machine._start_drivers

    def with_script(domtable):
        start_drivers(domtable)
        machine.drivers.append(ScriptDriver(machine, json.loads(script)))
    machine._start_drivers = with_script
    return machine.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
