"""Trace buffers: the record and buffer layouts, the event classes and ids.

Xen 2.0.0 (xen/include/public/trace.h, xen/common/trace.c) keeps one buffer per
CPU in hypervisor memory, shared with Domain-0: a `struct t_buf` header
{data, size, head, ...} followed by an array of `struct t_rec` {u64 cycles;
u32 event; u32 d1..d5}, written only by its CPU, found through DOM0_GETTBUFS
(the machine address of CPU 0's buffer and the size of each, in bytes; buffer i
follows at i * size). Xen 2.0.0 declared its scheduler ids privately in
common/schedule.c (0x00010000..0x0001000D) and the dom0_op ids in dom0_ops.c
(0x00020000 + cmd on entry, 0x00030000 + cmd on exit), and filtered nothing.
The public trace.h of the next release (Xen 3.0) gave the ids classes in the
upper 16 bits (TRC_GEN, TRC_SCHED, TRC_DOM0OP; TRC_ALL = 0xffff0000) and an
event mask with one rule: an event is recorded when (mask & event) != 0. smpxen
uses that header's ids and rule, puts the dom0_op ids into the TRC_DOM0OP class
(Xen 3.0 still numbered them from 0x00020000, inside TRC_SCHED), and gives what
no Xen traced classes of its own in bits Xen never assigned.

Xen 2.0's buffer overwrote its oldest records and the reader kept its tail to
itself. smpxen's reader publishes its tail in the header, so a full buffer drops
new records instead, counts them and, once there is room again, writes one
TRC_LOST_RECORDS record (Xen 3.x's id and idea) saying how many went missing.
Each index has one writer: the PCPU advances `head`, the reader `tail`."""
from __future__ import annotations

import ctypes
import struct

u32, u64 = ctypes.c_uint32, ctypes.c_uint64

# ---- classes (upper 16 bits of an event id) ----------------------------------------
TRC_GEN = 0x00010000          # general (Xen)
TRC_SCHED = 0x00020000        # scheduler (Xen)
TRC_DOM0OP = 0x00040000       # dom0 operations (Xen)
TRC_HCALL = 0x01000000        # smpxen: hypercall entry and exit
TRC_IPI = 0x02000000          # smpxen: IPIs sent and received
TRC_EVTCHN = 0x04000000       # smpxen: event sends, settings, upcalls
TRC_MM = 0x08000000           # smpxen: TLB flushes, shootdowns, writable page tables
TRC_MIGRATE = 0x10000000      # smpxen: domains moving between PCPUs
TRC_TIME = 0x20000000         # smpxen: time anchors, calibration, platform stamps
TRC_ALL = 0xFFFF0000

CLASSES = {"gen": TRC_GEN, "sched": TRC_SCHED, "dom0op": TRC_DOM0OP, "hcall": TRC_HCALL,
           "ipi": TRC_IPI, "evtchn": TRC_EVTCHN, "mm": TRC_MM, "migrate": TRC_MIGRATE,
           "time": TRC_TIME, "all": TRC_ALL}

# ---- Xen's ids --------------------------------------------------------------------
TRC_LOST_RECORDS = TRC_GEN + 1        # d1 records lost, d3/d4 cycles of the first lost

TRC_SCHED_DOM_ADD = TRC_SCHED + 1      # d1 domid
TRC_SCHED_DOM_REM = TRC_SCHED + 2      # d1 domid
TRC_SCHED_SLEEP = TRC_SCHED + 3        # d1 domid (paused)
TRC_SCHED_WAKE = TRC_SCHED + 4         # d1 domid (unblocked)
TRC_SCHED_YIELD = TRC_SCHED + 5        # d1 domid
TRC_SCHED_BLOCK = TRC_SCHED + 6        # d1 domid
TRC_SCHED_SHUTDOWN = TRC_SCHED + 7     # d1 domid, d2 reason (SHUTDOWN_*, SHUTDOWN_CRASH)
TRC_SCHED_CTL = TRC_SCHED + 8
TRC_SCHED_ADJDOM = TRC_SCHED + 9       # d1 domid
TRC_SCHED_SWITCH = TRC_SCHED + 10      # d1 prev domid, d2 prev vcpu, d3 next domid, d4 next vcpu
TRC_SCHED_S_TIMER_FN = TRC_SCHED + 11  # the slice ended
TRC_SCHED_T_TIMER_FN = TRC_SCHED + 12  # the 10 ms tick
TRC_SCHED_DOM_TIMER_FN = TRC_SCHED + 13  # d1 domid: its set_timer_op timer
# Xen 2.0.0 traced its 500 ms fallback timer too (TRC_SCHED_FALLBACK_TIMER_FN);
# the 3.0 header dropped it, so it takes the next free id of the class.
TRC_SCHED_FALLBACK_TIMER_FN = TRC_SCHED + 14

TRC_DOM0OP_ENTER_BASE = TRC_DOM0OP + 0x0000   # + cmd: d1 0, d2..d5 the union's first words
TRC_DOM0OP_LEAVE_BASE = TRC_DOM0OP + 0x1000   # + cmd: d1 the result, d2..d5 as on entry

# What Xen 2.0's idle domain is called in records (IDLE_DOMAIN_ID).
IDLE_DOMAIN_ID = 0x7FFF
# d2 of TRC_SCHED_SHUTDOWN for a crash (Xen 3.0's SHUTDOWN_crash; 2.0 had no reason).
SHUTDOWN_CRASH = 3

# ---- smpxen's ids -----------------------------------------------------------------
TRC_HCALL_ENTRY = TRC_HCALL + 1        # d1 domid, d2 number, d3..d5 its first three arguments
TRC_HCALL_EXIT = TRC_HCALL + 2         # d1 domid, d2 number, d3 result

TRC_IPI_SEND = TRC_IPI + 1             # d1 target, d2 kind, d3 sequence, d4/d5 first payload ints
TRC_IPI_RECV = TRC_IPI + 2             # d1 source, d2 kind, d3 sequence, d4/d5 as sent

TRC_EVTCHN_SEND = TRC_EVTCHN + 1       # d1 domid, d2 port, d3 sending domid (IDLE: the hypervisor)
TRC_EVTCHN_SET = TRC_EVTCHN + 2        # d1 domid, d2 port, d3 1 if it raised upcall_pending
TRC_EVTCHN_UPCALL = TRC_EVTCHN + 3     # d1 domid, d2 callback address

TRC_MM_TLB_FLUSH = TRC_MM + 1          # d1 1 if translated code went too
TRC_MM_SHOOTDOWN = TRC_MM + 2          # d1 PCPUs flushed, d2 PCPUs skipped by the clock, d3 mask lo, d4 mask hi
TRC_MM_PTWR_FLUSH = TRC_MM + 3         # d1 domid, d2 which (0 active, 1 inactive), d3 L1 frame

TRC_MIGRATE_OUT = TRC_MIGRATE + 1      # d1 domid, d2 target PCPU
TRC_MIGRATE_IN = TRC_MIGRATE + 2       # d1 domid (the IPI_MIGRATE received says from where)

TRC_TIME_ANCHOR = TRC_TIME + 1         # d1/d2 system time (ns) at this record's cycles,
#                                        d3/d4 ns per cycle (32.32 fixed point) as the model scales
TRC_TIME_CALIBRATE = TRC_TIME + 2      # d1/d2 local system time, d3/d4 platform time, d5 1 if warped
TRC_TIME_STAMP = TRC_TIME + 3          # d1/d2 stamped system time, d3/d4 stamped counter (xen2 PIT tick)

# id -> name, for the tools (the dom0_op ids are computed from the command).
NAMES = {value: name for name, value in dict(globals()).items()
         if name.startswith("TRC_") and isinstance(value, int) and value & 0xFFFF
         and not name.endswith("_BASE")}


def event_class(event: int) -> int:
    return event & 0xFFFF0000


def recorded(mask: int, event: int) -> bool:
    """Xen's rule: the event is recorded when the mask shares a bit with it."""
    return bool(mask & event)


# ---- layouts (little-endian, as on x86) ------------------------------------------------
class TRec(ctypes.LittleEndianStructure):
    """struct t_rec: the counter of the PCPU that wrote it, the event, five words."""
    _pack_ = 1
    _fields_ = [("cycles", u64), ("event", u32), ("d1", u32), ("d2", u32), ("d3", u32),
                ("d4", u32), ("d5", u32)]


class TBuf(ctypes.LittleEndianStructure):
    """struct t_buf. data, size and head are Xen 2.0's (head indexes the next
    record to write; smpxen wraps it at size); tail and lost are smpxen's."""
    _pack_ = 1
    _fields_ = [("data", u32),       # machine address of the record array
                ("size", u32),       # records the array holds (one slot stays empty)
                ("head", u32),       # next record the PCPU writes   (writer only)
                ("tail", u32),       # next record the reader takes  (reader only)
                ("lost", u32),       # records dropped on a full buffer, in all (writer only)
                ("_pad", u32 * 3)]


REC_SIZE = ctypes.sizeof(TRec)
TBUF_HEADER = ctypes.sizeof(TBuf)
assert REC_SIZE == 32 and TBUF_HEADER == 32
REC_FORMAT = "<QIIIIII"
assert struct.calcsize(REC_FORMAT) == REC_SIZE

# xentrace's output: each record as CPU(uint) followed by the t_rec, host-endian
# (little-endian here), 36 bytes, no padding.
FILE_REC_FORMAT = "<IQIIIIII"
FILE_REC_SIZE = struct.calcsize(FILE_REC_FORMAT)
assert FILE_REC_SIZE == 36


def records_per_buffer(size_bytes: int) -> int:
    """Records a buffer of `size_bytes` (header included) holds, as Xen 2.0 computes."""
    return (size_bytes - TBUF_HEADER) // REC_SIZE
