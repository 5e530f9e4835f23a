"""Virtual CPU state hypercalls (xen/arch/x86/traps.c, Xen 2.0): set_trap_table,
stack_switch, set_callbacks, fpu_taskswitch, set_debugreg, get_debugreg and
set_fast_trap. They only record state in the VCPU's ThreadState (and, for TS and
the debug registers, in the emulated CPU); smpxen.pcpu.bounce uses it."""
import struct

from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.arch_x86_32 import PAGE_OFFSET, TI_DPL_MASK, TI_IF_FLAG, VALID_CODESEL
from smpxen.xen.hypercall import Hypercall

_trap_info = struct.Struct("<BBHI")     # trap_info_t: vector, flags, cs, address
FAST_TRAP_VECTORS = frozenset([0x80, *range(0x20, 0x30)])
DR7_GD = 1 << 13


def do_set_trap_table(hv: Hypervisor, traps, *_):
    """Copy entries until one has address 0; a bad selector stops with -EPERM and
    leaves the entries before it installed, as Xen's loop does. The list has no
    bound, so the loop is preemptible (a continuation with the rest of the list)."""
    thread = hv.current.thread
    first = True
    while True:
        if not first and hv.preempt_pending():
            return hv.create_continuation(Hypercall.set_trap_table, traps)
        first = False
        vector, flags, cs, address = _trap_info.unpack(hv.mem.read(traps, _trap_info.size))
        if address == 0:
            return 0
        if not VALID_CODESEL(cs):
            return -errno.EPERM
        thread.traps[vector] = (flags, cs, address)
        if thread.fast_trap == vector:
            _capture_fast_trap(thread, vector)      # the gate follows its trap entry
        traps += _trap_info.size


def do_stack_switch(hv: Hypervisor, ss, esp, *_):
    if ss & 3 == 0:
        return -errno.EPERM
    thread = hv.current.thread
    thread.kernel_ss, thread.kernel_sp = ss & 0xFFFF, esp
    return 0


def do_set_callbacks(hv: Hypervisor, event_sel, event_addr, failsafe_sel, failsafe_addr, *_):
    if not VALID_CODESEL(event_sel) or not VALID_CODESEL(failsafe_sel):
        return -errno.EPERM
    t = hv.current.thread
    t.event_cs, t.event_address = event_sel & 0xFFFF, event_addr
    t.failsafe_cs, t.failsafe_address = failsafe_sel & 0xFFFF, failsafe_addr
    return 0


def do_fpu_taskswitch(hv: Hypervisor, *_):
    """Set CR0.TS: the guest's next FPU instruction raises #NM, which the hypervisor
    bounces to the guest after clearing TS (Xen's DF_GUEST_STTS)."""
    hv.current.thread.guest_stts = True
    hv.set_cr0_ts(True)
    return 0


def do_set_debugreg(hv: Hypervisor, reg, value, *_):
    value, rc = checked_debugreg(reg, value)
    if rc:
        return rc
    hv.current.thread.debugreg[reg] = value
    hv.write_debugreg(reg, value)
    return 0


def checked_debugreg(reg: int, value: int) -> tuple[int, int]:
    """set_debugreg's rules: (the value to load, 0) or (0, -errno)."""
    if reg in (0, 1, 2, 3):
        if value > PAGE_OFFSET - 4:
            return 0, -errno.EPERM
    elif reg == 6:
        value = (value & 0xFFFFEFFF) | 0xFFFF0FF0          # reserved bits
    elif reg == 7:
        if value != 0:
            value = (value & 0xFFFF27FF) | 0x400           # reserved bits
            if value & DR7_GD:
                return 0, -errno.EPERM
            # R/W and LEN fields: value 2 is an I/O breakpoint / undefined length.
            if any((value >> (16 + i)) & 3 == 2 for i in range(0, 16, 2)):
                return 0, -errno.EPERM
    else:
        return 0, -errno.EINVAL
    return value, 0


def do_get_debugreg(hv: Hypervisor, reg, *_):
    if not 0 <= reg <= 7:
        return -errno.EINVAL
    return hv.current.thread.debugreg[reg]


def do_set_fast_trap(hv: Hypervisor, idx, *_):
    """A direct system-call gate: `int idx` from the guest goes to its trap-table
    handler without the hypervisor's trap path (here: bounced inside the interrupt
    hook, without stopping the slice). Errors are Xen's literal -1 (= -EPERM)."""
    return set_fast_trap(hv.current.thread, idx)


def set_fast_trap(thread, idx: int) -> int:
    """set_fast_trap on a VCPU's ThreadState (also BUILDDOMAIN's fast_trap_idx)."""
    if idx == 0:
        thread.fast_trap, thread.fast_trap_gate = None, None
        return 0
    if idx not in FAST_TRAP_VECTORS:
        return -errno.EPERM
    flags = thread.trap(idx)[0]
    if flags & TI_IF_FLAG:
        # An interrupt gate cannot be virtualised: the CPU could not set the upcall mask.
        return -errno.EPERM
    thread.fast_trap = idx
    _capture_fast_trap(thread, idx)
    return 0


def _capture_fast_trap(thread, idx: int) -> None:
    flags, cs, address = thread.trap(idx)
    thread.fast_trap_gate = (flags & TI_DPL_MASK, cs, address)
