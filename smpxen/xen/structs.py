"""Guest-visible struct layouts of the Xen 2.0 x86_32 ABI, declared once as packed
little-endian ctypes structures and used by the hypervisor, the domain builder and
the tests alike. On x86_32 memory_t is 32 bits and every address field is padded to
8 bytes (MEMORY_PADDING)."""
import ctypes

from smpxen.xen.xen import MAX_CMDLINE

u8, u16, u32, u64, s32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32


class _Packed(ctypes.LittleEndianStructure):
    _pack_ = 1


def _check(cls, size):
    assert ctypes.sizeof(cls) == size, (cls.__name__, ctypes.sizeof(cls), size)
    return cls


class VcpuData(_Packed):
    _fields_ = [("evtchn_upcall_pending", u8), ("evtchn_upcall_mask", u8),
                ("pad0", u8), ("pad1", u8)]


class ArchSharedInfo(_Packed):
    _fields_ = [("mfn_to_pfn_start", u64), ("pfn_to_mfn_frame_list", u64)]


class SharedInfo(_Packed):
    """shared_info_t: one page per domain, written by the PCPU that runs the domain."""
    _fields_ = [
        ("vcpu_data", VcpuData * 1),
        ("evtchn_pending", u32 * 32),
        ("evtchn_pending_sel", u32),
        ("evtchn_mask", u32 * 32),
        ("cpu_freq", u64),
        ("time_version1", u32),
        ("time_version2", u32),
        ("tsc_timestamp", u64),
        ("system_time", u64),
        ("wc_sec", u32),
        ("wc_usec", u32),
        ("domain_time", u64),
        ("wall_timeout", u64),
        ("domain_timeout", u64),
        ("arch", ArchSharedInfo),
    ]


_check(SharedInfo, 344)
# XenLinux 2.0 keeps the domain-controller rings (control_if_t) at this offset of the page.
CONTROL_IF_OFFSET = 2048


class StartInfo(_Packed):
    """start_info_t: handed to the guest in ESI at entry."""
    _fields_ = [
        ("nr_pages", u32), ("_pad0", u32),
        ("shared_info", u32), ("_pad1", u32),        # MACHINE address of shared_info
        ("flags", u32),
        ("domain_controller_evtchn", u16),
        ("_pad2", u16),
        ("pt_base", u32), ("_pad3", u32),            # VIRTUAL address of the page directory
        ("nr_pt_frames", u32), ("_pad4", u32),
        ("mfn_list", u32), ("_pad5", u32),           # VIRTUAL address of the pfn->mfn array
        ("mod_start", u32), ("_pad6", u32),
        ("mod_len", u32), ("_pad7", u32),
        ("cmd_line", u8 * MAX_CMDLINE),
    ]


_check(StartInfo, 320)


class TrapInfo(_Packed):
    """trap_info_t: one entry of a virtual trap table (set_trap_table)."""
    _fields_ = [("vector", u8), ("flags", u8), ("cs", u16), ("address", u32)]


_check(TrapInfo, 8)


class MmuUpdate(_Packed):
    _fields_ = [("ptr", u32), ("val", u32)]


_check(MmuUpdate, 8)


class MulticallEntry(_Packed):
    """multicall_entry_t: op + 7 args; the result of the call is stored into args[5]."""
    _fields_ = [("op", u32), ("args", u32 * 7)]


_check(MulticallEntry, 32)
MULTICALL_RESULT_INDEX = 5


class ExecutionContext(_Packed):
    """execution_context_t (the saved-register frame order of entry.S SAVE_ALL)."""
    _fields_ = [(n, u32) for n in ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax",
                                   "ds", "es", "fs", "gs", "_unused", "eip", "cs",
                                   "eflags", "esp", "ss")]


_check(ExecutionContext, 68)

ECF_I387_VALID = 1 << 0        # full_execution_context_t.flags: fpu_ctxt holds FPU state
FPU_CTXT_BYTES = 256           # FXSAVE's first 256 bytes (FSAVE on CPUs without FXSR)
NR_TRAP_ENTRIES = 256
NR_GDT_FRAMES = 16


class FullExecutionContext(_Packed):
    """full_execution_context_t (arch-x86_32.h): a VCPU's whole state, what
    DOM0_BUILDDOMAIN starts a domain with and DOM0_GETDOMAININFO reports."""
    _fields_ = [
        ("flags", u32),                                  # ECF_I387_VALID
        ("cpu_ctxt", ExecutionContext),                  # user-level registers
        ("fpu_ctxt", u8 * FPU_CTXT_BYTES),               # FXSAVE image
        ("trap_ctxt", TrapInfo * NR_TRAP_ENTRIES),       # the virtual IDT
        ("fast_trap_idx", u32),
        ("ldt_base", u32), ("ldt_ents", u32),            # linear address, entries
        ("gdt_frames", u32 * NR_GDT_FRAMES), ("gdt_ents", u32),   # machine frames, entries
        ("guestos_ss", u32), ("guestos_esp", u32),       # ring-1 stack (stack_switch)
        ("pt_base", u32),                                # CR3: machine address of the L2
        ("debugreg", u32 * 8),
        ("event_callback_cs", u32), ("event_callback_eip", u32),
        ("failsafe_callback_cs", u32), ("failsafe_callback_eip", u32),
    ]


_check(FullExecutionContext, 2516)


# ---- event_channel_op (public/event_channel.h): evtchn_op_t = cmd, pad, 24-byte union
class EvtchnBindInterdomain(_Packed):
    _fields_ = [("dom1", u16), ("dom2", u16), ("port1", u32), ("port2", u32)]


class EvtchnBindVirq(_Packed):
    _fields_ = [("virq", u32), ("port", u32)]


class EvtchnBindPirq(_Packed):
    _fields_ = [("pirq", u32), ("flags", u32), ("port", u32)]


class EvtchnClose(_Packed):
    _fields_ = [("dom", u16), ("_pad", u16), ("port", u32)]


class EvtchnSend(_Packed):
    _fields_ = [("local_port", u32)]


class EvtchnStatusInterdomain(_Packed):
    _fields_ = [("dom", u16), ("_pad", u16), ("port", u32)]


class EvtchnStatusU(ctypes.Union):
    _pack_ = 1
    _fields_ = [("unbound_dom", u16), ("interdomain", EvtchnStatusInterdomain),
                ("pirq", u32), ("virq", u32)]


class EvtchnStatus(_Packed):
    _fields_ = [("dom", u16), ("_pad", u16), ("port", u32), ("status", u32), ("u", EvtchnStatusU)]


class EvtchnAllocUnbound(_Packed):
    _fields_ = [("dom", u16), ("_pad", u16), ("port", u32)]


class EvtchnOpU(ctypes.Union):
    _pack_ = 1
    _fields_ = [("bind_interdomain", EvtchnBindInterdomain), ("bind_virq", EvtchnBindVirq),
                ("bind_pirq", EvtchnBindPirq), ("close", EvtchnClose), ("send", EvtchnSend),
                ("status", EvtchnStatus), ("alloc_unbound", EvtchnAllocUnbound),
                ("_raw", u8 * 24)]


class EvtchnOp(_Packed):
    """evtchn_op_t: the argument of event_channel_op (IN and OUT fields)."""
    _fields_ = [("cmd", u32), ("_reserved", u32), ("u", EvtchnOpU)]


_check(EvtchnBindInterdomain, 12)
_check(EvtchnStatus, 20)
_check(EvtchnOp, 32)
