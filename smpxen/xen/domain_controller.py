"""The domain-controller messaging interface of Xen 2.0 (xen/include/public/io/
domain_controller.h at RELEASE-2.0.0): the control_if_t rings XenLinux 2.0 keeps in
bytes 2048..3087 of every domain's shared_info page, the control_msg_t they carry,
and the message types smpxen's controller serves (console data, shutdown requests,
memory requests). Declared once here; used by the PCPU's end of the rings, the
machine's domain controller, the guest runtime's constants (checked by a unit test)
and the tests.

Two rings of CONTROL_RING_SIZE 64-byte messages, each index a free-running u32
(the slot is index & (CONTROL_RING_SIZE - 1)):
  tx_ring  guest -> controller: the guest produces requests (tx_req_prod), the
           controller answers each in place (tx_resp_prod);
  rx_ring  controller -> guest: the controller produces requests (rx_req_prod), the
           guest answers each in place (rx_resp_prod).
Consumer indices are private to each side (XenLinux's ctrl_if_tx_resp_cons and
ctrl_if_rx_req_cons; xend's xu_port keeps tx_req_cons and rx_resp_cons, and private
copies of its own producers). A response echoes the request's type, subtype and id;
the side that asked matches responses by id."""
import ctypes

from smpxen.xen.structs import CONTROL_IF_OFFSET

u8, u32 = ctypes.c_uint8, ctypes.c_uint32

CONTROL_RING_SIZE = 8
CONTROL_MSG_DATA = 60              # bytes of msg[] in one message


class _Packed(ctypes.LittleEndianStructure):
    _pack_ = 1


class ControlMsg(_Packed):
    """control_msg_t."""
    _fields_ = [("type", u8), ("subtype", u8), ("id", u8), ("length", u8),
                ("msg", u8 * CONTROL_MSG_DATA)]


class ControlIf(_Packed):
    """control_if_t, at CONTROL_IF_OFFSET of shared_info."""
    _fields_ = [("tx_ring", ControlMsg * CONTROL_RING_SIZE),     # 0: guest -> controller
                ("rx_ring", ControlMsg * CONTROL_RING_SIZE),     # 512: controller -> guest
                ("tx_req_prod", u32), ("tx_resp_prod", u32),     # 1024, 1028
                ("rx_req_prod", u32), ("rx_resp_prod", u32)]     # 1032, 1036


class MemRequest(_Packed):
    """mem_request_t: the payload of CMSG_MEM_REQUEST_SET."""
    _fields_ = [("target", u32),       # OUT (to the guest): the reservation wanted, in pages
                ("status", u32)]       # IN (from the guest): its answer


def _check(cls, size):
    assert ctypes.sizeof(cls) == size, (cls.__name__, ctypes.sizeof(cls), size)


_check(ControlMsg, 64)
_check(ControlIf, 1040)
_check(MemRequest, 8)
assert CONTROL_IF_OFFSET + ctypes.sizeof(ControlIf) <= 4096

CONTROL_MSG_SIZE = ctypes.sizeof(ControlMsg)
TX_RING_OFFSET = ControlIf.tx_ring.offset
RX_RING_OFFSET = ControlIf.rx_ring.offset
TX_REQ_PROD_OFFSET = ControlIf.tx_req_prod.offset
TX_RESP_PROD_OFFSET = ControlIf.tx_resp_prod.offset
RX_REQ_PROD_OFFSET = ControlIf.rx_req_prod.offset
RX_RESP_PROD_OFFSET = ControlIf.rx_resp_prod.offset

# A message a guest sends without wanting its response delivered to a handler
# (XenLinux's ctrl_if_send_message_noblock with no handler).
CONTROL_MSG_NO_ID = 0xFF

# Top-level types.
CMSG_CONSOLE = 0
CMSG_BLKIF_BE = 1
CMSG_BLKIF_FE = 2
CMSG_NETIF_BE = 3
CMSG_NETIF_FE = 4
CMSG_SHUTDOWN = 6
CMSG_MEM_REQUEST = 7

# CMSG_CONSOLE subtypes: bytes of console output (guest -> controller) or input
# (controller -> guest) in msg[0:length].
CMSG_CONSOLE_DATA = 0

# CMSG_SHUTDOWN subtypes: the guest shuts down with the SHUTDOWN_* reason of the
# same number (smpxen/xen/xen.py).
CMSG_SHUTDOWN_POWEROFF = 0
CMSG_SHUTDOWN_REBOOT = 1
CMSG_SHUTDOWN_SUSPEND = 2
CMSG_SHUTDOWN_NAMES = {CMSG_SHUTDOWN_POWEROFF: "poweroff", CMSG_SHUTDOWN_REBOOT: "reboot",
                       CMSG_SHUTDOWN_SUSPEND: "suspend"}

# CMSG_MEM_REQUEST subtypes.
CMSG_MEM_REQUEST_SET = 0
