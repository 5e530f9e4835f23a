"""Bouncing exceptions, interrupts and event upcalls into a guest (Xen 2.0 traps.c
and entry.S create_bounce_frame / process_guest_exception_and_events).

Unicorn never delivers through the IDT (docs/design.md, invariant 2): every `int n` and
every fault reaches the PCPU's interrupt hook, and the hypervisor builds the frame
a CPU would have pushed on the guest's ring-1 stack and enters the handler the guest
registered (set_trap_table, set_callbacks):

    lower addresses                                     higher addresses
    [DS ES FS GS]  [CR2]  [error code]  EIP CS EFLAGS  [ESP SS]
    failsafe only  #PF    if x86 has one               only when leaving ring 3

The ring-1 stack is the one given by stack_switch when the guest was in ring 3, the
current ESP when it was already in ring 1. The handler runs with EFLAGS & 0xfffcbeff
(TF, NT, RF, VM cleared); an IF-flagged trap entry (an "interrupt gate") also sets
evtchn_upcall_mask. A fault while writing the frame crashes the domain, as in Xen.

Entering ring 1 from ring 3 (or from ring 0 in the entry trampoline) goes through the
iret trampoline like CpuCore.enter, but without restoring the ring-0 snapshot, which
would lose the guest's FPU state: the core reaches ring 0 by clearing CR0.PE|PG,
loading SS=0 and restoring CR0, then loads Xen's ring-0 CS/SS (measured to work with
this Unicorn), and the trampoline irets with the frame written on the PCPU's ring-0
stack. A same-ring bounce only writes ESP, EIP and EFLAGS. Either works from inside
the interrupt hook (the fast system-call trap is delivered there without stopping
the slice) or between slices.

ThreadState is Xen's `thread` struct of one VCPU: plain data (to_dict/from_dict) so
it can travel with a domain that migrates to another PCPU."""
from __future__ import annotations

import ctypes
import struct
from dataclasses import asdict, dataclass, field

from unicorn import x86_const as R

from smpxen.arch import x86
from smpxen.hv.guestmem import GuestFault
from smpxen.shm.boot import TRAMPOLINE_FRAME
from smpxen.shm.layout import HV_TRAMPOLINE_VA
from smpxen.xen import arch_x86_32 as A

# Offset, in a saved Unicorn context, of QEMU's env->error_code relative to the
# exception-state field CpuCore calibrates (env->old_exception): error_code,
# exception_is_int, exception_next_eip, dr[8] and four breakpoint pointers lie
# between them in CPUX86State. Verified at start-up by calibrate_error_code().
ERROR_CODE_DELTA = -112
# env->exception_is_int follows env->error_code: 1 when the exception is an `int n`,
# int3 or into, 0 for a fault (checked by calibrate_error_code).
EXCEPTION_IS_INT_DELTA = 4
SOFT_INT_OPCODES = {0xCC: 3, 0xCE: 4}     # int3, into: vector implied by the opcode
_trampoline_frame = struct.Struct(f"<{len(TRAMPOLINE_FRAME)}I")
NO_HANDLER = (0, A.FLAT_GUESTOS_CS, 0)     # (flags, cs, address) of an unset trap entry


@dataclass
class ThreadState:
    """Per-VCPU trap and callback state (Xen 2.0 struct thread_struct)."""
    # vector -> (flags, cs, address); vectors never set keep NO_HANDLER.
    traps: dict = field(default_factory=dict)
    kernel_ss: int = 0                 # stack_switch: ring-1 stack for bounces from ring 3
    kernel_sp: int = 0
    event_cs: int = A.FLAT_GUESTOS_CS
    event_address: int = 0
    failsafe_cs: int = A.FLAT_GUESTOS_CS
    failsafe_address: int = 0
    fast_trap: int | None = None       # vector of the direct system-call gate, or None
    fast_trap_gate: tuple | None = None   # (dpl, cs, address) captured by set_fast_trap
    debugreg: list = field(default_factory=lambda: [0] * 8)
    guest_stts: bool = False           # fpu_taskswitch asked for CR0.TS (DF_GUEST_STTS)
    in_failsafe: bool = False          # entering the failsafe handler right now

    def trap(self, vector: int) -> tuple:
        return self.traps.get(vector, NO_HANDLER)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["traps"] = {int(k): list(v) for k, v in self.traps.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ThreadState":
        d = dict(d)
        d["traps"] = {int(k): tuple(v) for k, v in d["traps"].items()}
        if d.get("fast_trap_gate") is not None:
            d["fast_trap_gate"] = tuple(d["fast_trap_gate"])
        return cls(**d)


def bounce_frame(eip: int, cs: int, eflags: int, esp: int, ss: int, kernel_ss: int,
                 kernel_sp: int, error_code: int | None = None, cr2: int | None = None,
                 segments: tuple | None = None) -> tuple[int, int, list[int]]:
    """Xen's create_bounce_frame as pure arithmetic: the interrupted context
    (eip, cs, eflags, esp, ss) -> (ss, esp, words), where `words` (lowest address
    first) go at the new esp. `segments` = (ds, es, fs, gs) for the failsafe frame."""
    words = [eip, cs, eflags]
    if cs & 3 == 3:
        words += [esp, ss]
        stack_ss, stack_sp = kernel_ss, kernel_sp
    else:
        stack_ss, stack_sp = ss, esp
    if error_code is not None:
        words.insert(0, error_code)
        if cr2 is not None:
            words.insert(0, cr2)
    if segments is not None:
        words = list(segments) + words
    return stack_ss, (stack_sp - 4 * len(words)) & 0xFFFFFFFF, words


class BounceError(Exception):
    """The domain cannot take this bounce (no handler, bad ring-1 stack): crash it."""


class Bouncer:
    """Builds frames and enters guest handlers on one PCPU's core."""

    def __init__(self, core, mem):
        self.core = core
        self.mem = mem
        self.error_code_offset = None

    # ---- start-up -------------------------------------------------------------------
    def calibrate_error_code(self) -> None:
        """Find env->error_code in a saved context: run a ring-0 probe that loads a
        bad selector (#GP with error code = selector & ~3) from the bottom of this
        PCPU's ring-0 stack page, which nothing else uses at start-up."""
        from keystone import KS_ARCH_X86, KS_MODE_32, Ks
        core, uc = self.core, self.core.uc
        code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm("mov ax, 0x1234\nmov ds, ax\nint3", core.stack_va)
        core.ram.write(core.stack_pa, bytes(code))
        saved_hook = core.on_interrupt
        seen = []

        def record(vector):
            seen.append(vector)
            uc.emu_stop()
        try:
            core.on_interrupt = record
            uc.context_restore(core.ring0)
            core.run(core.stack_va)
            ctx = bytes(uc.context_save())
        finally:
            core.on_interrupt = saved_hook
            core.ram.write(core.stack_pa, bytes(len(code)))
            uc.context_restore(core.ring0)
        expected = (0x1234).to_bytes(4, "little")
        guess = core._fault_state_offset + ERROR_CODE_DELTA
        if seen != [x86.GP]:
            raise RuntimeError(f"error-code probe saw vectors {seen}, expected #GP")
        if ctx[guess:guess + 4] != expected:
            raise RuntimeError("cannot locate Unicorn's error-code field; this Unicorn build "
                               "is not supported")
        self.error_code_offset = guess
        is_int = guess + EXCEPTION_IS_INT_DELTA
        if ctx[is_int:is_int + 4] != bytes(4) or self._probe_context("int3")[is_int:is_int + 4] != \
                (1).to_bytes(4, "little"):
            raise RuntimeError("cannot locate Unicorn's exception_is_int field; this Unicorn "
                               "build is not supported")

    def _probe_context(self, source: str) -> bytes:
        """The saved context at the first interrupt of a ring-0 probe (int3 only)."""
        from keystone import KS_ARCH_X86, KS_MODE_32, Ks
        core, uc = self.core, self.core.uc
        code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(source, core.stack_va)
        core.ram.write(core.stack_pa, bytes(code))
        saved_hook = core.on_interrupt
        try:
            core.on_interrupt = lambda vector: uc.emu_stop()
            uc.context_restore(core.ring0)
            core.run(core.stack_va)
            return bytes(uc.context_save())
        finally:
            core.on_interrupt = saved_hook
            core.ram.write(core.stack_pa, bytes(len(code)))
            uc.context_restore(core.ring0)

    # ---- reading the interrupted context ---------------------------------------
    def consume_fault(self) -> int:
        """A fault was taken by the hook: read its error code and clear QEMU's
        exception-in-progress state (CpuCore.reset_fault_state) in one context
        save/restore."""
        uc = self.core.uc
        ctx = uc.context_save()
        addr = ctypes.cast(ctx.context, ctypes.c_void_p).value
        code = ctypes.c_uint32.from_address(addr + self.error_code_offset).value
        ctypes.memmove(addr + self.core._fault_state_offset, b"\xff\xff\xff\xff", 4)
        uc.context_restore(ctx)
        return code

    def exception_was_int(self) -> bool:
        """QEMU's own word on the exception the hook just took: `int n`/int3/into."""
        ctx = self.core.uc.context_save()
        addr = ctypes.cast(ctx.context, ctypes.c_void_p).value
        return bool(ctypes.c_int32.from_address(addr + self.error_code_offset + EXCEPTION_IS_INT_DELTA).value)

    def is_soft_int(self, vector: int, eip: int) -> bool:
        """Was this `int n` / int3 / into (EIP after it) rather than a fault (EIP at
        the instruction)? Vectors >= 32 only come from `int n` here (no hardware
        interrupts reach a guest); below 32 look at the bytes before EIP."""
        if vector >= 32:
            return True
        try:
            if SOFT_INT_OPCODES.get(self.mem.read(eip - 1, 1)[0]) == vector:
                return True
            return self.mem.read(eip - 2, 2) == bytes((0xCD, vector))
        except GuestFault:
            return False

    def regs(self) -> tuple[int, int, int, int, int]:
        rr = self.core.read_reg
        return (rr(R.UC_X86_REG_EIP), rr(R.UC_X86_REG_CS) & 0xFFFF, rr(R.UC_X86_REG_EFLAGS),
                rr(R.UC_X86_REG_ESP), rr(R.UC_X86_REG_SS) & 0xFFFF)

    def data_segments(self) -> tuple[int, int, int, int]:
        # Selectors are 16 bits; the core's shared 32-bit read buffer keeps stale high bytes.
        rr = self.core.read_reg
        return tuple(rr(r) & 0xFFFF for r in (R.UC_X86_REG_DS, R.UC_X86_REG_ES,
                                              R.UC_X86_REG_FS, R.UC_X86_REG_GS))

    def trampoline_frame(self) -> dict:
        """The iret frame the entry trampoline was consuming (for the failsafe)."""
        words = _trampoline_frame.unpack(self.core.ram.read(
            self.core.stack_pa + 4096 - _trampoline_frame.size, _trampoline_frame.size))
        return dict(zip(TRAMPOLINE_FRAME, words))

    # ---- building the frame and entering the handler -----------------------------
    def bounce(self, thread: ThreadState, handler_cs: int, handler_eip: int,
               context: tuple, error_code: int | None = None, cr2: int | None = None,
               segments: tuple | None = None, data_segments: tuple | None = None) -> int:
        """Deliver to handler_cs:handler_eip over the interrupted `context`
        (eip, cs, eflags, esp, ss). Returns the address to resume emulation at
        (also written to EIP, so this works inside the hook). BounceError if the
        frame cannot be written."""
        eip, cs, eflags, esp, ss = context
        if handler_eip == 0:
            raise BounceError("no handler registered")
        if cs & 3 == 3 and thread.kernel_ss & 3 == 0:
            raise BounceError("no ring-1 stack registered with stack_switch")
        stack_ss, sp, words = bounce_frame(eip, cs, eflags, esp, ss, thread.kernel_ss,
                                           thread.kernel_sp, error_code, cr2, segments)
        self.mem.cr3 = self.core.cr3()
        try:
            self.mem.write(sp, struct.pack(f"<{len(words)}I", *words))
        except GuestFault as e:
            raise BounceError(f"fault while building the bounce frame on the ring-1 stack "
                              f"{stack_ss:#x}:{sp:#010x} ({e})") from None
        flags = eflags & x86.BOUNCE_EFLAGS_MASK
        core = self.core
        if core.cpl() == handler_cs & 3 and core.read_reg(R.UC_X86_REG_CS) & 0xFFFF == handler_cs:
            # Same ring, same code segment: no selector to load.
            core.write_reg(R.UC_X86_REG_ESP, sp)
            core.write_reg(R.UC_X86_REG_EFLAGS, flags)
            core.write_reg(R.UC_X86_REG_EIP, handler_eip)
            return handler_eip
        # Another ring or another code segment: the trampoline's iret loads CS with
        # the CPU's checks, and a selector it refuses faults in ring 0, which is the
        # failsafe callback, as Xen's iret to the guest. (Writing CS directly skips
        # the checks, and one whose descriptor is on an unmapped LDT page made QEMU
        # segfault: any domain could kill its PCPU with a trap-table entry.)
        segs = data_segments if data_segments is not None else self.data_segments()
        return self.enter_via_trampoline(dict(
            ds=segs[0], es=segs[1], fs=segs[2], gs=segs[3], eip=handler_eip, cs=handler_cs,
            eflags=flags, esp=sp, ss=stack_ss))

    def enter_via_trampoline(self, frame: dict) -> int:
        """Reach ring 0 keeping the guest's FPU/CR3 state, and iret through the
        trampoline with `frame` (TRAMPOLINE_FRAME order)."""
        core = self.core
        if core.cpl() != 0:
            cr0 = core.read_reg(R.UC_X86_REG_CR0)
            core.write_reg(R.UC_X86_REG_CR0, cr0 & ~(x86.CR0_PE | x86.CR0_PG))
            core.write_reg(R.UC_X86_REG_SS, 0)
            core.write_reg(R.UC_X86_REG_CR0, cr0)
            core.write_reg(R.UC_X86_REG_CS, A.HYPERVISOR_CS)
            core.write_reg(R.UC_X86_REG_SS, A.HYPERVISOR_DS)
        data = _trampoline_frame.pack(*(frame[name] & 0xFFFFFFFF for name in TRAMPOLINE_FRAME))
        core.ram.write(core.stack_pa + 4096 - len(data), data)
        core.write_reg(R.UC_X86_REG_ESP, core.stack_va + 4096 - len(data))
        core.write_reg(R.UC_X86_REG_EIP, HV_TRAMPOLINE_VA)
        return HV_TRAMPOLINE_VA


class GuestTrap:
    """What stopped the guest: the vector, where, and how (software int or fault)."""
    __slots__ = ("vector", "eip", "cpl", "soft", "error_code", "cr2")

    def __init__(self, vector, eip, cpl, soft, error_code=None, cr2=None):
        self.vector, self.eip, self.cpl, self.soft = vector, eip, cpl, soft
        self.error_code, self.cr2 = error_code, cr2

    def describe(self) -> str:
        what = x86.exception_name(self.vector) if not self.soft else f"int {self.vector:#x}"
        if self.vector == x86.PF and not self.soft:
            what += f" at {self.cr2:#010x}"
        return f"{what} at eip {self.eip:#010x} (ring {self.cpl})"


class GuestTraps:
    """The trap side of one PCPU: classifies what the hook saw and bounces it to
    the current domain's handlers (or says why the domain must crash)."""

    def __init__(self, pcpu):
        self.pcpu = pcpu
        self.bouncer = Bouncer(pcpu.core, pcpu.mem)
        self.bouncer.calibrate_error_code()
        self.counts = {"bounces": 0, "fast_traps": 0, "failsafe": 0}

    def classify(self, vector: int, eip: int, cpl: int) -> GuestTrap:
        """Read what the hook recorded; a fault's exception state is consumed here
        (its error code read and QEMU's in-progress marker cleared)."""
        b = self.bouncer
        b.mem.cr3 = self.pcpu.core.cr3()
        # The bytes before EIP can look like `int n` by chance (a #GP right after an
        # instruction ending in CD 0D was delivered as int 0x0d: no error code, the
        # frame one word short); QEMU's flag settles it.
        soft = cpl != 0 and b.is_soft_int(vector, eip) and b.exception_was_int()
        if soft:
            return GuestTrap(vector, eip, cpl, True)
        code = b.consume_fault()
        cr2 = self.pcpu.core.cr2() if vector == x86.PF else None
        return GuestTrap(vector, eip, cpl, False,
                         code if vector in x86.HAS_ERROR_CODE else None, cr2)

    def context(self, eip: int) -> tuple:
        _eip, cs, eflags, esp, ss = self.bouncer.regs()
        return (eip, cs, eflags, esp, ss)

    def bounce_to(self, v, cs: int, address: int, context: tuple, error_code=None,
                  cr2=None, if_flag: bool = False) -> int:
        start = self.bouncer.bounce(v.thread, cs, address, context, error_code, cr2)
        v.thread.in_failsafe = False
        if if_flag:
            v.shared.vcpu_data[0].evtchn_upcall_mask = 1
        self.counts["bounces"] += 1
        return start

    def _bounce_vector(self, v, vector: int, context: tuple, error_code=None, cr2=None) -> int:
        flags, cs, address = v.thread.trap(vector)
        return self.bounce_to(v, cs, address, context, error_code, cr2,
                              bool(flags & A.TI_IF_FLAG))

    def deliver(self, v, trap: GuestTrap) -> int:
        """Bounce `trap` into domain v; returns the resume address. Raises
        BounceError (with the reason) when the domain cannot take it."""
        if trap.cpl == 0:
            return self._failsafe(v, trap)
        ctx = self.context(trap.eip)
        t = v.thread
        if trap.soft:
            if trap.vector not in SOFT_INT_OPCODES.values():
                # The IDT gate check Xen's do_general_protection repeats on the
                # virtual trap table: a gate with DPL < CPL is a #GP(vector*8+2)
                # at the `int` instruction.
                if t.trap(trap.vector)[0] & A.TI_DPL_MASK < trap.cpl:
                    gp_ctx = ((trap.eip - 2) & 0xFFFFFFFF,) + ctx[1:]
                    return self._checked(v, x86.GP, gp_ctx, (trap.vector << 3) | 2, None, trap)
            return self._checked(v, trap.vector, ctx, None, None, trap)
        if trap.vector == x86.NM:
            # Xen's math_state_restore: clear TS; the guest sees #NM only if it
            # asked for TS with fpu_taskswitch.
            self.pcpu.hv.set_cr0_ts(False)
            if not t.guest_stts:
                return trap.eip
            t.guest_stts = False
        return self._checked(v, trap.vector, ctx, trap.error_code, trap.cr2, trap)

    def _checked(self, v, vector, ctx, error_code, cr2, trap) -> int:
        if v.thread.trap(vector)[2] == 0:
            what = trap.describe()
            if vector != trap.vector:
                what = f"{x86.exception_name(vector)} (from {what})"
            raise BounceError(f"unhandled {what}: no handler for vector {vector:#x}")
        try:
            return self._bounce_vector(v, vector, ctx, error_code, cr2)
        except BounceError as e:
            raise BounceError(f"{trap.describe()}: {e}") from None

    def _failsafe(self, v, trap: GuestTrap) -> int:
        """A fault at ring 0 in the entry trampoline: reloading the guest's segments
        or its iret frame failed. Xen bounces to the failsafe callback with the
        four data selectors below the normal frame, and enters it with null
        data segments; a fault while entering the failsafe callback is fatal."""
        t = v.thread
        what = f"{trap.describe()} while entering the guest (bad segment or iret frame)"
        if t.in_failsafe or t.failsafe_address == 0:
            raise BounceError(what + (": fault while entering the failsafe callback"
                                      if t.in_failsafe else ": no failsafe callback"))
        f = self.bouncer.trampoline_frame()
        ctx = (f["eip"], f["cs"], f["eflags"], f["esp"], f["ss"])
        segs = (f["ds"], f["es"], f["fs"], f["gs"])
        try:
            start = self.bouncer.bounce(t, t.failsafe_cs, t.failsafe_address, ctx,
                                        segments=segs, data_segments=(0, 0, 0, 0))
        except BounceError as e:
            raise BounceError(f"{what}: {e}") from None
        t.in_failsafe = True
        self.counts["failsafe"] += 1
        return start

    def fast_trap(self, v, vector: int, eip: int, cpl: int) -> bool:
        """Inside the hook: the direct system-call gate. True if delivered."""
        gate = v.thread.fast_trap_gate
        if gate is None or vector != v.thread.fast_trap or gate[0] < cpl or gate[2] == 0:
            return False
        try:
            self.bouncer.bounce(v.thread, gate[1], gate[2], self.context(eip))
        except BounceError:
            return False                 # the ordinary path reports it
        self.counts["fast_traps"] += 1
        return True
