"""Probe: ZeroMQ start-up order and message costs between two Python processes, with
the sockets smpxen uses (smpxen/ipc/endpoints.py: each process binds one PULL inbox
on an abstract-namespace ipc://@name and sends through PUSH sockets it connects).

1. Connect before bind: a process connects a PUSH socket to ipc://@name and sends
   before anyone has bound that name; the message arrives once another process
   binds it. The same is tried with a file-path ipc:// endpoint (reported only).
2. Round trip: two processes ping-pong msgpack-encoded [kind, src, seq] messages,
   each receiving on its own inbox.
3. msgpack encode + decode of an IPI-sized message, in-process.

    python scripts/probes/zmq_startup.py [ROUNDS]     (default 2000 round trips)

Exits 1 if a message sent before the bind over ipc://@name never arrives, or a
round trip fails."""
import os
import select
import statistics
import sys
import tempfile
import time
import timeit

import msgpack
import zmq

DELIVERY_WAIT_MS = 5000


def pushed_before_bind(endpoint: str) -> float | None:
    """ms from the bind to the arrival of a message sent before it, or None. The
    sender keeps its socket open until told the message arrived (or 2 s after the
    receiver gave up), as smpxen's long-lived outboxes do: closing a socket right
    after a send races with a connection still pending, and can drop the message."""
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(done_w)
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send(b"sent before the bind")
        select.select([done_r], [], [], DELIVERY_WAIT_MS / 1000 + 2)
        ctx.destroy()
        os._exit(0)
    os.close(done_r)
    time.sleep(0.2)                 # the child has connected and sent by now
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.setsockopt(zmq.LINGER, 0)
    inbox.bind(endpoint)
    t = time.perf_counter()
    got = inbox.poll(DELIVERY_WAIT_MS)
    took = (time.perf_counter() - t) * 1000
    os.write(done_w, b"x")
    os.close(done_w)
    inbox.close()
    ctx.term()
    os.waitpid(pid, 0)
    return took if got else None


def endpoints(tag: str) -> tuple[str, str]:
    return f"ipc://@smpxen-probe-{tag}-a", f"ipc://@smpxen-probe-{tag}-b"


def echo_peer(mine: str, theirs: str, rounds: int) -> None:
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.bind(mine)
    out = ctx.socket(zmq.PUSH)
    out.connect(theirs)
    for _ in range(rounds + 1):
        kind, _src, seq = msgpack.unpackb(inbox.recv())
        out.send(msgpack.packb(["reply", 1, seq]))
    out.setsockopt(zmq.LINGER, 1000)
    ctx.destroy()


def round_trips(rounds: int) -> list[float]:
    a, b = endpoints(f"{os.getpid()}-rtt")
    pid = os.fork()
    if pid == 0:
        echo_peer(b, a, rounds)
        os._exit(0)
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.bind(a)
    out = ctx.socket(zmq.PUSH)
    out.connect(b)
    out.send(msgpack.packb(["ping", 0, -1]))         # warm-up: both connections up
    msgpack.unpackb(inbox.recv())
    samples = []
    for seq in range(rounds):
        t = time.perf_counter()
        out.send(msgpack.packb(["ping", 0, seq]))
        _kind, _src, got = msgpack.unpackb(inbox.recv())
        samples.append((time.perf_counter() - t) * 1e6)
        if got != seq:
            raise SystemExit(f"FACT NO LONGER HOLDS: round trip {seq} answered {got}")
    ctx.destroy(linger=0)
    os.waitpid(pid, 0)
    return samples


def msgpack_us() -> float:
    msg = ["ipi_call", 3, 12345, "mm_flush", [True]]
    n = 20000
    best = min(timeit.repeat(lambda: msgpack.unpackb(msgpack.packb(msg)), number=n, repeat=3))
    return best / n * 1e6


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    abstract = pushed_before_bind(f"ipc://@smpxen-probe-{os.getpid()}-early")
    with tempfile.TemporaryDirectory() as d:
        path = pushed_before_bind(f"ipc://{d}/early.sock")
    rtt = sorted(round_trips(rounds))
    codec = msgpack_us()

    def shown(ms):
        return "never arrived" if ms is None else f"arrived {ms:.0f} ms after the bind"
    print(f"PUSH connected and sent before the PULL bound: ipc://@name {shown(abstract)}; "
          f"file-path ipc:// {shown(path)}")
    print(f"PUSH/PULL round trip between two Python processes ({rounds}): median "
          f"{statistics.median(rtt):.0f} us, p99 {rtt[int(0.99 * (len(rtt) - 1))]:.0f} us; "
          f"msgpack encode+decode {codec:.1f} us")
    if abstract is None:
        print("FACT NO LONGER HOLDS: a message sent before the bind over ipc://@name was lost")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
