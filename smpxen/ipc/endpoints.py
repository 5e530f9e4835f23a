"""ZeroMQ endpoint names and sockets for one machine.

Linux abstract-namespace ipc (`ipc://@name`): no files to clean up, and no hang when
a peer connects before the other side binds (docs/design.md, invariant 7). Every process
receives on one PULL socket it binds and sends on PUSH sockets it connects, so a
socket is only ever used by the thread that owns it."""
from __future__ import annotations

import zmq


def machine_endpoint(tag: str) -> str:
    return f"ipc://@smpxen-{tag}-machine"


def pcpu_endpoint(tag: str, index: int) -> str:
    return f"ipc://@smpxen-{tag}-pcpu{index}"


def bind_inbox(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.bind(endpoint)
    return s


def connect_outbox(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 1000)   # let last messages (stats, console) go out at exit
    s.setsockopt(zmq.SNDHWM, 100000)
    s.connect(endpoint)
    return s
