"""A VCPU's whole state as full_execution_context_t (Xen 2.0 arch/x86/domain.c
arch_final_setup_guestos, arch/x86/dom0_ops.c arch_getdomaininfo_ctxt): what
DOM0_BUILDDOMAIN starts a domain with and what DOM0_GETDOMAININFO reports. Run on
the PCPU hosting the domain, which owns its saved CPU context and ThreadState.

Where the registers are: on the core when the domain is current here (EIP is the
loop's resume point between slices, the core's inside a hook); in its saved
Unicorn context otherwise, read through a scratch Unicorn instance (a context
restores into any core of the same mode; the context object's own reg_read loses
the FPU and table registers); in the state BUILDDOMAIN gave it before it first
ran. A context saved in the entry trampoline (entered, not yet run) keeps the
guest's segments, EIP, EFLAGS and stack in the iret frame it is about to pop.

fpu_ctxt holds FXSAVE's layout: FCW, FSW, abridged FTW, MXCSR and the eight x87
and SSE registers (ST(i) as the core numbers them); the instruction and operand
pointers are left 0.

smpxen is stricter than Xen 2.0 here (Xen copies these verbatim): trap entries,
callbacks and the fast trap must pass the checks of set_trap_table,
set_callbacks and set_fast_trap, and the LDT those of MMUEXT_SET_LDT (-EINVAL,
-EPERM for the fast trap, as the hypercalls answer)."""
from __future__ import annotations

import ctypes
import struct

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as R

from smpxen.hv.traps import checked_debugreg, set_fast_trap
from smpxen.pcpu.bounce import ThreadState
from smpxen.shm.boot import TRAMPOLINE_FRAME
from smpxen.shm.frametable import PGT_l2_page_table
from smpxen.shm.layout import GDT_VIRT_START
from smpxen.sched.flags import DFM_CONSTRUCTED
from smpxen.xen import arch_x86_32 as A, errno
from smpxen.xen.structs import (ECF_I387_VALID, FPU_CTXT_BYTES, NR_GDT_FRAMES, NR_TRAP_ENTRIES,
                                FullExecutionContext)

CTX_SIZE = ctypes.sizeof(FullExecutionContext)
GPRS = ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax")
SEGS = ("ds", "es", "fs", "gs")
REG = {name: getattr(R, f"UC_X86_REG_{name.upper()}")
       for name in (*GPRS, *SEGS, "eip", "cs", "eflags", "esp", "ss")}
MAX_GDT_ENTRIES = 8192
_u32 = struct.Struct("<I")
_fx_head = struct.Struct("<HHBxHIHxxIHxxII")      # FCW FSW FTW FOP FIP FCS FDP FDS MXCSR MXCSR_MASK
MXCSR_MASK = 0xFFFF


# ---- reading a domain's state -----------------------------------------------------------
def _scratch(pcpu) -> Uc:
    """A register-only Unicorn instance of this PCPU, for reading and writing saved
    contexts."""
    uc = getattr(pcpu, "_ctx_scratch", None)
    if uc is None:
        uc = pcpu._ctx_scratch = Uc(UC_ARCH_X86, UC_MODE_32)
    return uc


def _in_slice(pcpu) -> bool:
    """Inside a hook of the running slice (EIP is the core's), not between slices."""
    return bool(pcpu.mailbox.watcher.running)


def _registers(pcpu, v) -> tuple[Uc | None, dict]:
    """(a core holding v's context, or None if v never ran; v's guest registers)."""
    if v is pcpu.current:
        core = pcpu.core
        uc, saved = core.uc, core.save()
        regs = {name: core.read_reg(reg) for name, reg in REG.items()}
        if not _in_slice(pcpu):
            regs["eip"] = pcpu.resume_eip
    elif v.context is not None:
        uc, saved = _scratch(pcpu), v.context
        uc.context_restore(saved[0])
        regs = {name: uc.reg_read(reg) for name, reg in REG.items()}
    else:
        return None, dict(v.initial or _default_entry(v.info))
    _ctx, frame, _off = saved
    if frame is not None:            # in the trampoline: the guest's values are in the frame
        words = [w[0] for w in _u32.iter_unpack(frame)]
        regs.update(zip(TRAMPOLINE_FRAME[len(TRAMPOLINE_FRAME) - len(words):], words))
    for name in (*SEGS, "cs", "ss"):
        regs[name] &= 0xFFFF
    return uc, regs


def _default_entry(info) -> dict:
    """Xen 2.0's new_thread: where the boot-time builder starts a domain."""
    ds = A.FLAT_RING1_DS
    from smpxen.pcpu.schedule import INITIAL_EFLAGS
    return dict(eip=info.entry_eip, cs=A.FLAT_RING1_CS, eflags=INITIAL_EFLAGS, esp=info.entry_esp,
                ss=ds, ds=ds, es=ds, fs=ds, gs=ds, esi=info.start_info_va, cr3=info.pt_base_mfn << 12)


def fxsave_image(uc: Uc) -> bytes:
    """The first 256 bytes of FXSAVE for the FPU state of the context on `uc`."""
    tag = uc.reg_read(R.UC_X86_REG_FPTAG)
    abridged = sum(1 << i for i in range(8) if (tag >> (2 * i)) & 3 != 3)
    out = bytearray(FPU_CTXT_BYTES)
    _fx_head.pack_into(out, 0, uc.reg_read(R.UC_X86_REG_FPCW) & 0xFFFF, uc.reg_read(R.UC_X86_REG_FPSW) & 0xFFFF,
                       abridged, 0, 0, 0, 0, 0, uc.reg_read(R.UC_X86_REG_MXCSR), MXCSR_MASK)
    for i in range(8):
        mantissa, exponent = uc.reg_read(getattr(R, f"UC_X86_REG_FP{i}"))
        struct.pack_into("<QH", out, 32 + 16 * i, mantissa, exponent)
        out[160 + 16 * i:176 + 16 * i] = uc.reg_read(getattr(R, f"UC_X86_REG_XMM{i}")).to_bytes(16, "little")
    return bytes(out)


def load_fxsave_image(uc: Uc, image: bytes) -> None:
    """FXRSTOR of `image` into the core (the inverse of fxsave_image)."""
    fcw, fsw, abridged, _fop, _fip, _fcs, _fdp, _fds, mxcsr, _mask = _fx_head.unpack_from(image, 0)
    uc.reg_write(R.UC_X86_REG_FPCW, fcw)
    uc.reg_write(R.UC_X86_REG_FPSW, fsw)
    uc.reg_write(R.UC_X86_REG_FPTAG, sum((0 if abridged >> i & 1 else 3) << (2 * i) for i in range(8)))
    uc.reg_write(R.UC_X86_REG_MXCSR, mxcsr & MXCSR_MASK)
    for i in range(8):
        mantissa, exponent = struct.unpack_from("<QH", image, 32 + 16 * i)
        uc.reg_write(getattr(R, f"UC_X86_REG_FP{i}"), (mantissa, exponent))
        uc.reg_write(getattr(R, f"UC_X86_REG_XMM{i}"),
                     int.from_bytes(image[160 + 16 * i:176 + 16 * i], "little"))


def get_context(pcpu, v) -> bytes:
    """arch_getdomaininfo_ctxt: full_execution_context_t of domain v, hosted here."""
    c = FullExecutionContext()
    uc, regs = _registers(pcpu, v)
    for name in (*GPRS, *SEGS, "eip", "cs", "eflags", "esp", "ss"):
        setattr(c.cpu_ctxt, name, regs.get(name, 0) & 0xFFFFFFFF)
    t = v.thread
    for vector in range(NR_TRAP_ENTRIES):
        flags, cs, address = t.trap(vector)
        e = c.trap_ctxt[vector]
        e.vector, e.flags, e.cs, e.address = vector, flags, cs, address
    c.fast_trap_idx = t.fast_trap or 0
    c.ldt_base, c.ldt_ents = v.ldt_base, v.ldt_ents
    c.guestos_ss, c.guestos_esp = t.kernel_ss, t.kernel_sp
    for i, value in enumerate(t.debugreg):
        c.debugreg[i] = value
    c.event_callback_cs, c.event_callback_eip = t.event_cs, t.event_address
    c.failsafe_callback_cs, c.failsafe_callback_eip = t.failsafe_cs, t.failsafe_address
    if uc is None:                           # built (or boot-built) but never run
        c.pt_base = regs.get("cr3", v.info.pt_base_mfn << 12)
        gdt_ents = regs.get("gdt_ents", 0)
        fpu = regs.get("fpu")
        if fpu is not None:
            c.flags |= ECF_I387_VALID
            ctypes.memmove(c.fpu_ctxt, fpu, FPU_CTXT_BYTES)
    else:
        c.pt_base = uc.reg_read(R.UC_X86_REG_CR3)
        _sel, base, limit, _flags = uc.reg_read(R.UC_X86_REG_GDTR)
        gdt_ents = (limit + 1) // 8 if base == GDT_VIRT_START else 0
        c.flags |= ECF_I387_VALID
        ctypes.memmove(c.fpu_ctxt, fxsave_image(uc), FPU_CTXT_BYTES)
    if gdt_ents:
        frames = pcpu.paging.mm.gdt_frames(v.domid)
        for i, mfn in enumerate(frames[:NR_GDT_FRAMES]):
            c.gdt_frames[i] = mfn
        c.gdt_ents = gdt_ents
    return bytes(c)


# ---- starting a domain from a context (DOM0_BUILDDOMAIN) ---------------------------------------
def _thread_state(c) -> ThreadState | int:
    """The ThreadState c describes, or the errno its first bad field gives."""
    t = ThreadState()
    for vector in range(NR_TRAP_ENTRIES):
        e = c.trap_ctxt[vector]
        if e.address:
            if not A.VALID_CODESEL(e.cs):
                return -errno.EINVAL
            t.traps[vector] = (e.flags, e.cs, e.address)
    for cs, address in ((c.event_callback_cs, c.event_callback_eip),
                        (c.failsafe_callback_cs, c.failsafe_callback_eip)):
        if address and not A.VALID_CODESEL(cs):
            return -errno.EINVAL
    t.event_cs, t.event_address = c.event_callback_cs & 0xFFFF, c.event_callback_eip
    t.failsafe_cs, t.failsafe_address = c.failsafe_callback_cs & 0xFFFF, c.failsafe_callback_eip
    t.kernel_ss, t.kernel_sp = c.guestos_ss & 0xFFFF, c.guestos_esp
    rc = set_fast_trap(t, c.fast_trap_idx)
    if rc:
        return rc
    for reg in (0, 1, 2, 3, 6, 7):                    # Xen ignores set_debugreg's refusals here
        value, rc = checked_debugreg(reg, c.debugreg[reg])
        if not rc:
            t.debugreg[reg] = value
    return t


def build(pcpu, v, raw: bytes) -> int:
    """final_setup_guestos: domain v (hosted here, created, not yet built) will start
    from the context `raw` when its PCPU first runs it."""
    info = v.info
    if info.flags & DFM_CONSTRUCTED or v.context is not None:
        return -errno.EINVAL
    c = FullExecutionContext.from_buffer_copy(raw)
    cpu = c.cpu_ctxt
    if cpu.cs & 3 == 0 or cpu.ss & 3 == 0:
        return -errno.EINVAL
    thread = _thread_state(c)
    if isinstance(thread, int):
        return thread
    if c.ldt_base & 0xFFF or c.ldt_ents > A.MAX_LDT_ENTRIES or \
            c.ldt_base + c.ldt_ents * A.LDT_ENTRY_SIZE > A.PAGE_OFFSET:
        return -errno.EINVAL
    if c.gdt_ents and not A.LAST_RESERVED_GDT_ENTRY < c.gdt_ents <= MAX_GDT_ENTRIES:
        return -errno.EINVAL
    mm = pcpu.paging.mm
    base = c.pt_base >> 12
    if not mm.is_ram(base) or not mm.get_page_and_type(base, v.domid, PGT_l2_page_table):
        return -errno.EINVAL
    if c.gdt_ents:
        frames = list(c.gdt_frames[:(c.gdt_ents + 511) // 512])
        if not mm.set_gdt(v.domid, frames, c.gdt_ents):
            mm.put_page_and_type(base)
            return -errno.EINVAL
    pcpu.paging.run_deferred()            # the flushes a type change asked for
    v.thread = thread
    v.ldt_base, v.ldt_ents = c.ldt_base, c.ldt_ents
    regs = {name: getattr(cpu, name) for name in (*GPRS, *SEGS, "eip", "cs", "eflags", "esp", "ss")}
    regs.update(cr3=base << 12, gdt_ents=c.gdt_ents,
                fpu=bytes(c.fpu_ctxt) if c.flags & ECF_I387_VALID else None)
    v.initial = regs
    info.pt_base_mfn = base
    info.entry_eip, info.entry_esp = cpu.eip, cpu.esp
    info.flags |= DFM_CONSTRUCTED
    return 0


def first_entry(pcpu, v) -> int:
    """Load v's starting state into the core (its first schedule-in): the builder's
    start of day, or what BUILDDOMAIN gave. Returns where the core starts."""
    core = pcpu.core
    regs = v.initial or _default_entry(v.info)
    start = core.enter(regs["cr3"], regs)
    if regs.get("gdt_ents"):
        pcpu.paging.load_gdt(regs["gdt_ents"])
    if regs.get("fpu") is not None:
        load_fxsave_image(core.uc, regs["fpu"])
    for reg, value in enumerate(v.thread.debugreg):
        if value:
            core.write_reg(getattr(R, f"UC_X86_REG_DR{reg}"), value)
    v.initial = None
    return start


def set_iopl(pcpu, v, iopl: int) -> None:
    """DOM0_IOPL: EFLAGS.IOPL of domain v (hosted here), wherever its EFLAGS is: on
    the core, in the iret frame of a context saved in the trampoline, in a saved
    context, or in its starting state."""
    def with_iopl(eflags: int) -> int:
        return (eflags & ~EFLAGS_IOPL) | ((iopl & 3) << 12)
    core = pcpu.core
    if v is pcpu.current:
        ctx, frame, off = core.save()
        if frame is None:
            core.write_reg(R.UC_X86_REG_EFLAGS, with_iopl(core.read_reg(R.UC_X86_REG_EFLAGS)))
            return
        v_frame = _patch_frame(frame, with_iopl)
        core.ram.write(core.stack_pa + off, v_frame)
    elif v.context is not None:
        ctx, frame, off = v.context
        if frame is None:
            uc = _scratch(pcpu)
            uc.context_restore(ctx)
            uc.reg_write(R.UC_X86_REG_EFLAGS, with_iopl(uc.reg_read(R.UC_X86_REG_EFLAGS)))
            v.context = (uc.context_save(), None, off)
        else:
            v.context = (ctx, _patch_frame(frame, with_iopl), off)
    else:
        regs = v.initial if v.initial is not None else _default_entry(v.info)
        regs["eflags"] = with_iopl(regs["eflags"])
        v.initial = regs


EFLAGS_IOPL = 3 << 12


def _patch_frame(frame: bytes, fn) -> bytes:
    """An entry frame (the tail of TRAMPOLINE_FRAME) with its EFLAGS word changed."""
    words = [w[0] for w in _u32.iter_unpack(frame)]
    names = TRAMPOLINE_FRAME[len(TRAMPOLINE_FRAME) - len(words):]
    if "eflags" in names:
        i = names.index("eflags")
        words[i] = fn(words[i]) & 0xFFFFFFFF
    return b"".join(_u32.pack(w) for w in words)
