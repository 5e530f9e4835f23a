"""The client's side of `smpxen xm console DOM` (the verb: smpxen/control/
ctrl_verbs.py): the domain's output is written to stdout as it arrives; what comes
on stdin is sent a line at a time as the domain's console input (the
console-input verb), as xm console passed keystrokes to xend's console server in
Xen 2.0. A terminal in its usual line mode sends a line when Enter is pressed; an
input that ends (Ctrl-D, or a pipe's end) is just no more input. The console ends
when the domain does (exit status 0), Ctrl-C leaves it (0), and the machine going
away is an error (1)."""
from __future__ import annotations

import os
import sys

import zmq

from smpxen.control.endpoint import VERSION, decode, encode

POLL_MS = 200
EXIT_FAILED = 1


def _lines(buf: bytearray, final: bool) -> list[str]:
    """Complete lines taken from buf (all of it when final), without their ends."""
    out = []
    while True:
        nl = buf.find(b"\n")
        if nl < 0:
            break
        out.append(bytes(buf[:nl]).rstrip(b"\r").decode(errors="replace"))
        del buf[:nl + 1]
    if final and buf:
        out.append(bytes(buf).decode(errors="replace"))
        buf.clear()
    return out


def run(endpoint: str, pid: int | None, args: list[str], request, alive) -> int:
    """`request(endpoint, verb, args, pid=...)` and `alive(pid)` are xm.py's."""
    if len(args) != 1:
        sys.stderr.write("xm: console: expected DOM\n")
        return EXIT_FAILED
    dom = args[0]
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    stdin = sys.stdin.fileno() if sys.stdin is not None else None
    if stdin is not None:
        poller.register(stdin, zmq.POLLIN)
    pending = bytearray()
    try:
        sock.send_multipart([b"", encode({"v": VERSION, "verb": "console", "args": [dom],
                                           "cwd": os.getcwd()})])
        while True:
            ready = dict(poller.poll(POLL_MS))
            if sock in ready:
                reply = decode(sock.recv_multipart()[-1])
                if reply.get("out"):
                    sys.stdout.write(reply["out"])
                    sys.stdout.flush()
                if not reply.get("more"):
                    if not reply.get("ok"):
                        sys.stderr.write(f"xm: {reply.get('error')}\n")
                        return EXIT_FAILED
                    return 0
            if stdin is not None and stdin in ready:
                data = os.read(stdin, 4096)
                if data:
                    pending += data
                else:                                   # end of input: no more to send
                    poller.unregister(stdin)
                    stdin = None
                for line in _lines(pending, final=stdin is None):
                    ok, _out, error = request(endpoint, "console-input", [dom, line], pid=pid)
                    if not ok:
                        sys.stderr.write(f"xm: {error}\n")
            if not ready and pid is not None and not alive(pid):
                sys.stderr.write("xm: the machine went away\n")
                return EXIT_FAILED
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
