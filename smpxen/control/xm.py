"""`smpxen xm`: the client of a running machine's control endpoint
(smpxen/control/endpoint.py has the protocol).

Which machine: --machine TAG (the tag `smpxen up` printed, or just its process id),
or --machine ipc://@smpxen-TAG-control; without it, the one machine running on this
host (its endpoint is an abstract socket, found in /proc/net/unix). No machine, or
several without --machine: one line and exit status 1. A verb's output goes to
stdout as it arrives; a failure is one line on stderr ("xm: ...") and exit status
1. If the machine goes away while a verb runs, the client notices within a second."""
from __future__ import annotations

import os
import re
import sys

import zmq

from smpxen.control.endpoint import VERSION, control_endpoint, decode, encode

EXIT_FAILED = 1
_ENDPOINT = re.compile(r"^@smpxen-((\d+)-[0-9a-f]+)-control$")
POLL_MS = 1000


class NoMachine(Exception):
    pass


def running_machines() -> dict[str, int]:
    """tag -> machine pid of every machine whose control endpoint is bound here."""
    out = {}
    try:
        with open("/proc/net/unix") as f:
            for line in f:
                m = _ENDPOINT.match(line.rsplit(None, 1)[-1])
                if m and _alive(int(m[2])):
                    out[m[1]] = int(m[2])
    except OSError:
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_machine(machine: str | None) -> tuple[str, int | None]:
    """(endpoint address, machine pid if known) for --machine (None: the only one)."""
    if machine and "://" in machine:
        # an address is only taken as one of a machine bound here: ZeroMQ would wait
        # for any other for ever
        m = _ENDPOINT.match(machine.removeprefix("ipc://"))
        if not machine.startswith("ipc://") or m is None:
            raise NoMachine(f"--machine {machine!r}: not a control endpoint (ipc://@smpxen-TAG-control)")
        machine = m[1]
    machines = running_machines()
    if machine:
        hits = {t: p for t, p in machines.items() if t == machine or str(p) == machine}
        if not hits:
            raise NoMachine(f"no running machine {machine!r} (running: {_listing(machines)})")
    else:
        hits = machines
        if not hits:
            raise NoMachine("no smpxen machine is running here (start one with smpxen up)")
        if len(hits) > 1:
            raise NoMachine(f"{len(hits)} machines are running ({_listing(hits)}); choose one "
                            "with --machine TAG")
    (tag, pid), = hits.items()
    return control_endpoint(tag), pid


def _listing(machines: dict) -> str:
    return ", ".join(sorted(machines)) if machines else "none"


def request(endpoint: str, verb: str, args: list[str], out=None, pid: int | None = None,
            zctx: zmq.Context | None = None) -> tuple[bool, str, str | None]:
    """Send one request and collect the replies: (ok, all output, error). Output is
    also written to `out` as it arrives."""
    ctx = zctx or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart([b"", encode({"v": VERSION, "verb": verb, "args": list(args),
                                           "cwd": os.getcwd()})])
        text = []
        while True:
            if not sock.poll(POLL_MS):
                if pid is not None and not _alive(pid):
                    return False, "".join(text), "the machine went away"
                continue
            reply = decode(sock.recv_multipart()[-1])
            if reply.get("out"):
                text.append(reply["out"])
                if out is not None:
                    out.write(reply["out"])
                    out.flush()
            if not reply.get("more"):
                return bool(reply.get("ok")), "".join(text), reply.get("error")
    finally:
        sock.close()


def main(machine: str | None, verb: str, args: list[str]) -> int:
    try:
        endpoint, pid = find_machine(machine)
    except NoMachine as e:
        sys.stderr.write(f"xm: {e}\n")
        return EXIT_FAILED
    if verb == "console":                 # output and input at once (smpxen/control/console_client.py)
        from smpxen.control.console_client import run as console
        return console(endpoint, pid, args, request, _alive)
    try:
        ok, _text, error = request(endpoint, verb, args, out=sys.stdout, pid=pid)
    except KeyboardInterrupt:
        return 130
    if not ok:
        sys.stderr.write(f"xm: {error}\n")
        return EXIT_FAILED
    return 0


def usage() -> list[tuple[str, str]]:
    """(usage, summary) of every verb, for `smpxen xm --help`."""
    from smpxen.control import verbs  # noqa: F401  (fills VERBS)
    from smpxen.control.endpoint import VERBS
    return sorted({v.name: (v.usage, v.summary) for v in VERBS.values()}.values())
