"""The wire format between processes (smpxen/ipc/messages.py)."""
from smpxen.ipc import messages as M


def test_messages_round_trip():
    data = M.encode(M.CONSOLE, 3, 7, b"\x00bytes")
    assert M.decode(data) == [M.CONSOLE, 3, 7, b"\x00bytes"]
    assert M.decode(M.encode(M.STATS, 0, {1: {"a": 2}})) == [M.STATS, 0, {1: {"a": 2}}]
