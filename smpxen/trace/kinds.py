"""How IPIs appear in trace records: each kind of message between PCPUs a number
(d2 of TRC_IPI_SEND and TRC_IPI_RECV; 0 for a kind not listed) and the two payload
words a record keeps (d4, d5), so the tools can name them and pair a send with its
receive."""
from __future__ import annotations

from smpxen.ipc import messages as M

# Every message one PCPU sends another (smpxen/ipc/messages.py): the IPIs, and the
# control-plane messages a PCPU passes on to the one hosting a domain.
# Codes are fixed: trace files keep them.
IPI_CODES = {M.IPI_EVENT_CHECK: 1, M.IPI_CALL: 2, M.IPI_REPLY: 3, M.IPI_FAILED: 4, M.IPI_TSC_SYNC: 5,
             M.IPI_MIGRATE: 6, M.IPI_EVTCHN_SET: 7, M.CTRL_REQUEST: 8, M.CONSOLE_INPUT: 9,
             M.PRIVCMD: 10}
IPI_NAMES = {code: kind for kind, code in IPI_CODES.items()}
EVTCHN_SET_CODE = IPI_CODES[M.IPI_EVTCHN_SET]


def ipi_code(kind: str) -> int:
    return IPI_CODES.get(kind, 0)


def ipi_name(code: int) -> str:
    return IPI_NAMES.get(code, f"ipi{code}")


def payload_words(payload) -> tuple[int, int]:
    """The first two integers of a message's payload (an event's domid and port, a
    remote call's sequence number); a migration's domid."""
    words = []
    for p in payload[:2]:
        if isinstance(p, dict):
            p = p.get("domid", 0)
        words.append(p if isinstance(p, int) and not isinstance(p, bool) else 0)
    while len(words) < 2:
        words.append(0)
    return words[0], words[1]
