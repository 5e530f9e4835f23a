"""xen/include/public/dom0_ops.h and sched_ctl.h (Xen 2.0.0): the privileged
control interface. dom0_op_t is 80 bytes: cmd, interface_version, a 72-byte union."""
import ctypes

u8, u16, u32, s32, u64, s64 = (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32,
                               ctypes.c_int32, ctypes.c_uint64, ctypes.c_int64)

DOM0_INTERFACE_VERSION = 0xAAAA0019

DOM0_GETMEMLIST = 2
DOM0_SCHEDCTL = 6
DOM0_ADJUSTDOM = 7
DOM0_CREATEDOMAIN = 8
DOM0_DESTROYDOMAIN = 9
DOM0_PAUSEDOMAIN = 10
DOM0_UNPAUSEDOMAIN = 11
DOM0_GETDOMAININFO = 12
DOM0_BUILDDOMAIN = 13
DOM0_IOPL = 14
DOM0_MSR = 15
DOM0_DEBUG = 16
DOM0_SETTIME = 17
DOM0_GETPAGEFRAMEINFO = 18
DOM0_READCONSOLE = 19
DOM0_PINCPUDOMAIN = 20
DOM0_GETTBUFS = 21
DOM0_PHYSINFO = 22
DOM0_PCIDEV_ACCESS = 23
DOM0_SCHED_ID = 24
DOM0_SHADOW_CONTROL = 25
DOM0_SETDOMAININITIALMEM = 27
DOM0_SETDOMAINMAXMEM = 28
DOM0_GETPAGEFRAMEINFO2 = 29
DOM0_SETDOMAINVMASSIST = 30

# DOM0_GETDOMAININFO flags word
DOMFLAGS_DYING = 1 << 0
DOMFLAGS_CRASHED = 1 << 1
DOMFLAGS_SHUTDOWN = 1 << 2
DOMFLAGS_PAUSED = 1 << 3
DOMFLAGS_BLOCKED = 1 << 4
DOMFLAGS_RUNNING = 1 << 5
DOMFLAGS_CPUMASK = 255
DOMFLAGS_CPUSHIFT = 8
DOMFLAGS_SHUTDOWNMASK = 255
DOMFLAGS_SHUTDOWNSHIFT = 16

# sched_ctl.h
SCHED_BVT = 0
SCHED_ATROPOS = 2
SCHED_RROBIN = 3
SCHED_INFO_PUT = 0
SCHED_INFO_GET = 1


class _Packed(ctypes.LittleEndianStructure):
    _pack_ = 1


class Dom0Op(_Packed):
    _fields_ = [("cmd", u32), ("interface_version", u32), ("u", u8 * 72)]


UNION_OFFSET = 8
assert ctypes.sizeof(Dom0Op) == 80


class GetDomainInfo(_Packed):
    _fields_ = [("domain", u16), ("_pad0", u16), ("flags", u32), ("ctxt", u32), ("_pad1", u32),
                ("tot_pages", u32), ("_pad2", u32), ("max_pages", u32), ("_pad3", u32),
                ("shared_info_frame", u32), ("_pad4", u32), ("cpu_time", u64)]


assert ctypes.sizeof(GetDomainInfo) == 48


class DomainOnly(_Packed):
    """DESTROYDOMAIN, PAUSEDOMAIN, UNPAUSEDOMAIN."""
    _fields_ = [("domain", u16)]


class PinCpuDomain(_Packed):
    _fields_ = [("domain", u16), ("_pad", u16), ("cpu", s32)]


class SetTime(_Packed):
    _fields_ = [("secs", u32), ("usecs", u32), ("system_time", u64)]


class SchedCtl(_Packed):
    """struct sched_ctl_cmd: sched_id, direction, then the BVT ctx_allow (u32)."""
    _fields_ = [("sched_id", u32), ("direction", u32), ("ctx_allow", u32), ("_pad", u32)]


assert ctypes.sizeof(SchedCtl) == 16


class AdjustDom(_Packed):
    """struct sched_adjdom_cmd with its BVT member (packed: warpl @28, warpu @36)."""
    _fields_ = [("sched_id", u32), ("direction", u32), ("domain", u16), ("_pad0", u16),
                ("_pad1", u32), ("mcu_adv", u32), ("warpback", u32), ("warpvalue", s32),
                ("warpl", s64), ("warpu", s64)]


assert ctypes.sizeof(AdjustDom) == 44 and AdjustDom.warpl.offset == 28


class PhysInfo(_Packed):
    _fields_ = [("ht_per_core", u32), ("cores", u32), ("cpu_khz", u32), ("_pad", u32),
                ("total_pages", u32), ("_pad1", u32), ("free_pages", u32), ("_pad2", u32)]


class SchedId(_Packed):
    _fields_ = [("sched_id", u32)]


class GetTbufs(_Packed):
    """DOM0_GETTBUFS (OUT): the machine address of CPU 0's trace buffer and the size
    of each buffer in bytes (buffer i is at mach_addr + i * size); smpxen/xen/trace.py."""
    _fields_ = [("mach_addr", u32), ("_pad", u32), ("size", u32)]


assert ctypes.sizeof(GetTbufs) == 12


class GetMemList(_Packed):
    _fields_ = [("domain", u16), ("_pad0", u16), ("_pad1", u32), ("max_pfns", u32), ("_pad2", u32),
                ("buffer", u32), ("_pad3", u32), ("num_pfns", u32), ("_pad4", u32)]


class CreateDomain(_Packed):
    """memory_kb IN; cpu IN (-1: the least-populated CPU); domain IN/OUT (0 or a
    reserved id: allocate one)."""
    _fields_ = [("memory_kb", u32), ("_pad0", u32), ("cpu", u32), ("_pad1", u32),
                ("domain", u16), ("_pad2", u16)]


class BuildDomain(_Packed):
    """domain IN; ctxt IN: a full_execution_context_t (smpxen/xen/structs.py)."""
    _fields_ = [("domain", u16), ("_pad0", u16), ("_pad1", u32), ("ctxt", u32), ("_pad2", u32)]


class Iopl(_Packed):
    _fields_ = [("domain", u16), ("_pad", u16), ("iopl", u32)]


class Msr(_Packed):
    _fields_ = [("write", u32), ("cpu_mask", u32), ("msr", u32), ("in1", u32), ("in2", u32),
                ("out1", u32), ("out2", u32)]


class Debug(_Packed):
    """DOM0_DEBUG (Xen's pervasive debugger): declared for the record, not modelled."""
    _fields_ = [("domain", u16), ("opcode", u8), ("_pad", u8), ("in1", u32), ("in2", u32),
                ("in3", u32), ("in4", u32), ("status", u32), ("out1", u32), ("out2", u32)]


# DOM0_GETPAGEFRAMEINFO(2) frame types (the type in bits 28..30, LPINTAB: pinned)
NOTAB = 0
L1TAB = 1 << 28
L2TAB = 2 << 28
L3TAB = 3 << 28
L4TAB = 4 << 28
LPINTAB = 1 << 31
XTAB = 0xF << 28
LTAB_MASK = XTAB
LTABTYPE_MASK = 0x7 << 28
GPF2_MAX = 1024               # DOM0_GETPAGEFRAMEINFO2 takes at most this many frames (-E2BIG)


class GetPageFrameInfo(_Packed):
    _fields_ = [("pfn", u32), ("_pad0", u32), ("domain", u16), ("_pad1", u16), ("type", u32)]


class ReadConsole(_Packed):
    _fields_ = [("str", u32), ("_pad", u32), ("count", u32), ("cmd", u32)]


CONSOLE_RING_CLEAR = 1        # xen/console.h: READCONSOLE empties the ring after the copy
CONSOLE_RING_SIZE = 16392     # xen/drivers/char/console.c: the ring fills, then drops


class PciDevAccess(_Packed):
    """DOM0_PCIDEV_ACCESS: declared for the record; no PCI devices are modelled."""
    _fields_ = [("domain", u16), ("_pad", u16), ("bus", u32), ("dev", u32), ("func", u32),
                ("enable", u32)]


class SetDomainMem(_Packed):
    """DOM0_SETDOMAININITIALMEM (initial_memkb) and DOM0_SETDOMAINMAXMEM (max_memkb):
    the same layout."""
    _fields_ = [("domain", u16), ("_pad0", u16), ("_pad1", u32), ("memkb", u32), ("_pad2", u32)]


class GetPageFrameInfo2(_Packed):
    _fields_ = [("domain", u16), ("_pad0", u16), ("_pad1", u32), ("num", u32), ("_pad2", u32),
                ("array", u32), ("_pad3", u32)]


class SetDomainVmAssist(_Packed):
    _fields_ = [("domain", u16), ("_pad0", u16), ("cmd", u32), ("type", u32)]


for _cls, _size in ((GetMemList, 32), (CreateDomain, 20), (BuildDomain, 16), (Iopl, 8), (Msr, 28),
                    (Debug, 32), (GetPageFrameInfo, 16), (ReadConsole, 16), (PciDevAccess, 20),
                    (SetDomainMem, 16), (GetPageFrameInfo2, 24), (SetDomainVmAssist, 12),
                    (PhysInfo, 32)):
    assert ctypes.sizeof(_cls) == _size, (_cls.__name__, ctypes.sizeof(_cls))
