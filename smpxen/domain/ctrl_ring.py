"""The controller's end of a domain's control interface: the ring discipline of
xend's xu_port (tools/python/xen/lowlevel/xu/xu.c, Xen 2.0.0) over the control_if_t
in the domain's shared_info page (smpxen/xen/domain_controller.py).

The controller keeps four indices of its own: its consumer of the guest's requests
(tx_req_cons) and of the guest's responses (rx_resp_cons), and private copies of the
two producers it owns (tx_resp_prod, rx_req_prod), written through to the shared
page. It trusts the guest's producers only as far as they stay within what it
knows: it reads at most CONTROL_RING_SIZE requests ahead of its own responses, and
never a response to a request it did not write. So a guest that scribbles over its
indices confuses only itself.

`idx` is any object with the four u32 attributes; the PCPU uses the domain's
shared DomainInfo record (smpxen/shm/domains.py), so the controller's end of the
rings goes wherever the domain goes. Messages travel as 64-byte strings."""
from __future__ import annotations

import ctypes

from smpxen.xen.domain_controller import (CONTROL_MSG_DATA, CONTROL_MSG_SIZE, CONTROL_RING_SIZE,
                                          ControlIf, ControlMsg)
from smpxen.xen.structs import CONTROL_IF_OFFSET

U32 = 0xFFFFFFFF


def slot(index: int) -> int:
    """MASK_CONTROL_IDX."""
    return index & (CONTROL_RING_SIZE - 1)


def make_msg(type_: int, subtype: int, id_: int, data: bytes = b"") -> bytes:
    """A control_msg_t with `data` (at most CONTROL_MSG_DATA bytes) as its payload."""
    if len(data) > CONTROL_MSG_DATA:
        raise ValueError(f"control message payload of {len(data)} bytes (at most {CONTROL_MSG_DATA})")
    m = ControlMsg(type_, subtype, id_, len(data))
    ctypes.memmove(m.msg, data, len(data))
    return bytes(m)


def parse_msg(raw: bytes) -> tuple[int, int, int, bytes]:
    """(type, subtype, id, payload); a length over the payload's size is clipped, as
    xu_port_read_request does."""
    m = ControlMsg.from_buffer_copy(raw)
    return m.type, m.subtype, m.id, bytes(m.msg[:min(m.length, CONTROL_MSG_DATA)])


def control_if_of(buf, shared_info_addr: int) -> ControlIf:
    """The control_if_t view inside the shared_info page at `shared_info_addr` of buf."""
    return ControlIf.from_buffer(buf, shared_info_addr + CONTROL_IF_OFFSET)


class ControllerPort:
    def __init__(self, ring: ControlIf, idx):
        self.ring = ring
        self.idx = idx

    def connect(self) -> None:
        """Synchronise with the shared indices (xu_port's __xu_port_connect)."""
        r, i = self.ring, self.idx
        i.tx_resp_prod = r.tx_resp_prod
        i.tx_req_cons = r.tx_resp_prod
        i.rx_req_prod = r.rx_req_prod
        i.rx_resp_cons = r.rx_resp_prod

    # ---- guest -> controller: requests in, responses out --------------------------
    def request_to_read(self) -> bool:
        c = self.idx.tx_req_cons
        return c != self.ring.tx_req_prod and (c - self.idx.tx_resp_prod) & U32 != CONTROL_RING_SIZE

    def read_request(self) -> bytes:
        """The next request; call only when request_to_read()."""
        c = self.idx.tx_req_cons
        raw = bytes(self.ring.tx_ring[slot(c)])
        self.idx.tx_req_cons = (c + 1) & U32
        return raw

    def space_to_write_response(self) -> bool:
        return self.idx.tx_resp_prod != self.idx.tx_req_cons

    def write_response(self, raw: bytes) -> None:
        """Answer the oldest unanswered request; call only when space_to_write_response()."""
        p = self.idx.tx_resp_prod
        ctypes.memmove(ctypes.addressof(self.ring.tx_ring[slot(p)]), raw, CONTROL_MSG_SIZE)
        p = (p + 1) & U32
        self.idx.tx_resp_prod = p
        self.ring.tx_resp_prod = p

    # ---- controller -> guest: requests out, responses in --------------------------
    def space_to_write_request(self) -> bool:
        return (self.idx.rx_req_prod - self.idx.rx_resp_cons) & U32 != CONTROL_RING_SIZE

    def write_request(self, raw: bytes) -> None:
        """Call only when space_to_write_request()."""
        p = self.idx.rx_req_prod
        ctypes.memmove(ctypes.addressof(self.ring.rx_ring[slot(p)]), raw, CONTROL_MSG_SIZE)
        p = (p + 1) & U32
        self.idx.rx_req_prod = p
        self.ring.rx_req_prod = p

    def response_to_read(self) -> bool:
        c = self.idx.rx_resp_cons
        return c != self.ring.rx_resp_prod and c != self.idx.rx_req_prod

    def read_response(self) -> bytes:
        """The next response; call only when response_to_read()."""
        c = self.idx.rx_resp_cons
        raw = bytes(self.ring.rx_ring[slot(c)])
        self.idx.rx_resp_cons = (c + 1) & U32
        return raw

    def outstanding_requests(self) -> int:
        """Requests written that the guest has not answered (that we have read)."""
        return (self.idx.rx_req_prod - self.idx.rx_resp_cons) & U32
