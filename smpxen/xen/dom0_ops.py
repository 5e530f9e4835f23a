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
