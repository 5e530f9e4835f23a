"""The guest's end of a control interface in Python, as XenLinux 2.0's ctrl_if.c
does it (the bundled guests do the same in runtime.s): private tx_resp_cons and
rx_req_cons, TX_FULL when CONTROL_RING_SIZE requests await responses, requests
copied out of the ring before they are answered."""
from __future__ import annotations

import ctypes

from smpxen.domain.ctrl_ring import U32, slot
from smpxen.xen.domain_controller import CONTROL_MSG_SIZE, CONTROL_RING_SIZE, ControlIf


class GuestPort:
    def __init__(self, ring: ControlIf):
        self.ring = ring
        # ctrl_if_resume: sync with the shared indices
        self.tx_resp_cons = ring.tx_resp_prod
        self.rx_req_cons = ring.rx_resp_prod

    def tx_full(self) -> bool:
        return (self.ring.tx_req_prod - self.tx_resp_cons) & U32 == CONTROL_RING_SIZE

    def send(self, raw: bytes) -> bool:
        """ctrl_if_send_message_noblock: False (-EAGAIN) when the ring is full."""
        if self.tx_full():
            return False
        p = self.ring.tx_req_prod
        ctypes.memmove(ctypes.addressof(self.ring.tx_ring[slot(p)]), raw, CONTROL_MSG_SIZE)
        self.ring.tx_req_prod = (p + 1) & U32
        return True

    def reap_responses(self) -> list[bytes]:
        """__ctrl_if_tx_tasklet: every response up to tx_resp_prod."""
        out = []
        rp = self.ring.tx_resp_prod
        while self.tx_resp_cons != rp:
            out.append(bytes(self.ring.tx_ring[slot(self.tx_resp_cons)]))
            self.tx_resp_cons = (self.tx_resp_cons + 1) & U32
        return out

    def take_requests(self) -> list[bytes]:
        """__ctrl_if_rx_tasklet: copy out every request up to rx_req_prod."""
        out = []
        rp = self.ring.rx_req_prod
        while self.rx_req_cons != rp:
            out.append(bytes(self.ring.rx_ring[slot(self.rx_req_cons)]))
            self.rx_req_cons = (self.rx_req_cons + 1) & U32
        return out

    def send_response(self, raw: bytes) -> None:
        """ctrl_if_send_response."""
        p = self.ring.rx_resp_prod
        ctypes.memmove(ctypes.addressof(self.ring.rx_ring[slot(p)]), raw, CONTROL_MSG_SIZE)
        self.ring.rx_resp_prod = (p + 1) & U32
