"""One PCPU's emulated x86-32 core: a Unicorn instance over the shared machine RAM.

How the hypervisor drives it (docs/design.md, invariants 2, 3 and 5):
- Entering a guest from scratch: restore the ring-0 snapshot taken at start-up,
  load the guest's CR3, write an iret frame on this PCPU's ring-0 stack and run the
  trampoline (pop gs/fs/es/ds; iretd) into ring 1 or 3.
- Switching between domains: save / restore the whole CPU context (FPU included)
  and flush the soft TLB, which is not part of a context.
- Every `int n` and every fault reaches `on_interrupt` (Unicorn never uses the
  IDT); hypercalls are handled inside the hook and the guest continues, anything
  that needs the PCPU loop records an exit and stops the slice.
- Machine RAM is mapped with the hypervisor's sealed frames (GDT, trampoline, ring-0
  stacks, PERDOMAIN window) behind checked MMIO (smpxen.pcpu.seal): ring 1 and 3
  cannot read them; an access the seal refuses reaches `on_interrupt` as #GP(0).
- A fault consumed by the hook leaves QEMU's "exception in progress" field set, and
  the next fault is then lost silently (measured: the run just ends at the faulting
  instruction). `reset_fault_state` clears it by patching that field in a saved
  context; its offset is found and verified at start-up by `_calibrate`.
"""
from __future__ import annotations

import ctypes
import struct

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_HOOK_INTR, UC_MODE_32, Uc, UcError
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn import x86_const as R
from unicorn.unicorn_py3.arch.intel import HOOK_INSN_CPUID_CFUNC
from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC, uccallback

from smpxen.arch import x86
from smpxen.pcpu.bounce import ERROR_CODE_DELTA
from smpxen.pcpu.seal import Seal
from smpxen.pcpu.ucpatch import RegisterWriter, forbid_mid_instruction_exits, raw_function
from smpxen.shm.boot import PROBE_LOOP_INSTRUCTIONS, TRAMPOLINE_FRAME
from smpxen.shm.layout import HV_EXIT_VA, HV_GDT_VA, HV_TRAMPOLINE_VA
from smpxen.xen import arch_x86_32 as A

GDT_LIMIT = (A.LAST_RESERVED_GDT_ENTRY + 1) * 8 - 1
BOOT_CR0 = x86.CR0_PG | x86.CR0_WP | x86.CR0_ET | x86.CR0_PE
_frame = struct.Struct(f"<{len(TRAMPOLINE_FRAME)}I")
_NO_FRAME = bytes(_frame.size)

# Xen's x86_32 hypercall convention: EAX = number; EBX, ECX, EDX, ESI, EDI = arguments.
HYPERCALL_ARG_REGS = (R.UC_X86_REG_EBX, R.UC_X86_REG_ECX, R.UC_X86_REG_EDX,
                      R.UC_X86_REG_ESI, R.UC_X86_REG_EDI)
HYPERCALL_ARGS = (R.UC_X86_REG_EAX, *HYPERCALL_ARG_REGS)
# What the hook reads on every `int n` and fault, in one C call: CS (the CPL), then
# the hypercall number and arguments.
ENTRY_REGS = (R.UC_X86_REG_CS, *HYPERCALL_ARGS)


class CoreSetupError(RuntimeError):
    pass


class CpuCore:
    def __init__(self, ram, layout, index: int, probes: dict[str, int]):
        self.ram = ram
        self.layout = layout
        self.index = index
        self.probes = probes
        self.stack_pa = layout.stack_mfn(index) << 12
        self.stack_va = layout.stack_va(index)
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self.seal = Seal(self)                    # RAM, with the sealed frames behind a check
        forbid_mid_instruction_exits(uc._uch)     # before any code is translated
        uc.reg_write(R.UC_X86_REG_GDTR, (0, HV_GDT_VA, GDT_LIMIT, 0))
        uc.reg_write(R.UC_X86_REG_CR3, layout.probe_pd_mfn << 12)   # idle_pd + the probe page
        uc.reg_write(R.UC_X86_REG_CR0, BOOT_CR0)
        uc.reg_write(R.UC_X86_REG_CS, A.HYPERVISOR_CS)
        uc.reg_write(R.UC_X86_REG_SS, A.HYPERVISOR_DS)
        uc.reg_write(R.UC_X86_REG_DS, A.HYPERVISOR_DS)
        uc.reg_write(R.UC_X86_REG_ES, A.HYPERVISOR_DS)
        self.ring0 = uc.context_save()
        self._fast_registers()
        self.seal.calibrate()
        # The PCPU loop's callbacks (attach): on_interrupt(vector) for every `int n`
        # and fault, on_rdtsc() -> the 64-bit cycle count. The start-up probes set
        # their own until then.
        self.on_interrupt = None
        self.on_rdtsc = None
        self.cpuid_leaf1 = None       # (eax, ebx, ecx, edx) with our APIC id
        self._fault_state_offset = None
        self._install_hooks()
        self._calibrate()

    # ---- hot-path register access ---------------------------------------------
    def _fast_registers(self) -> None:
        """The binding's reg_read/reg_write cost ~1.4 µs each; calling the C API
        directly with preallocated buffers and no per-call argument checks costs
        ~0.3 µs. A null hypercall reads CS and six registers (one call) and writes
        one, so this is most of its cost."""
        h = self.uc._uch
        self._h = h
        self._c_read = raw_function("uc_reg_read")
        self.write_reg = RegisterWriter(h)      # never uc_reg_write: see smpxen.pcpu.ucpatch
        self._c_read_batch = raw_function("uc_reg_read_batch")
        self._u32 = ctypes.c_uint32()
        self._u32_ref = ctypes.byref(self._u32)
        n = self._batch_n = ctypes.c_int(len(ENTRY_REGS))
        self._batch_ids = (ctypes.c_int * n.value)(*ENTRY_REGS)
        self._batch_vals = (ctypes.c_uint32 * n.value)()
        self._batch_list = memoryview(self._batch_vals).cast("B").cast("I").tolist   # ~0.1 us; tuple() ~0.7
        base = ctypes.addressof(self._batch_vals)
        self._batch_ptrs = (ctypes.c_void_p * n.value)(*[base + 4 * i for i in range(n.value)])

    def read_reg(self, reg: int) -> int:
        self._u32.value = 0          # 16-bit registers (selectors) fill only the low half
        self._c_read(self._h, reg, self._u32_ref)
        return self._u32.value

    # ---- hooks -------------------------------------------------------------
    def _install_hooks(self) -> None:
        uc = self.uc

        def intr_cb(_handle, vector, _user):
            self._interrupt(vector)
        self.hook_error = None
        self._intr_cb = HOOK_INTR_CFUNC(intr_cb)
        uc._Uc__do_hook_add(UC_HOOK_INTR, self._intr_cb, 1, 0)

        @uccallback(uc, HOOK_INSN_CPUID_CFUNC)
        def rdtsc_cb(_uc, _key):
            value = self.on_rdtsc()
            uc.reg_write(R.UC_X86_REG_EAX, value & 0xFFFFFFFF)
            uc.reg_write(R.UC_X86_REG_EDX, (value >> 32) & 0xFFFFFFFF)
            return 1   # skip the instruction: we produced its result

        @uccallback(uc, HOOK_INSN_CPUID_CFUNC)
        def cpuid_cb(_uc, _key):
            if self.cpuid_leaf1 is None or uc.reg_read(R.UC_X86_REG_EAX) != 1:
                return 0   # let the emulated CPU answer
            a, b, c, d = self.cpuid_leaf1
            uc.reg_write(R.UC_X86_REG_EAX, a)
            uc.reg_write(R.UC_X86_REG_EBX, b)
            uc.reg_write(R.UC_X86_REG_ECX, c)
            uc.reg_write(R.UC_X86_REG_EDX, d)
            return 1

        # The Python binding only wraps CPUID hooks; RDTSC uses the same C signature.
        self._keep = (rdtsc_cb, cpuid_cb)
        uc._Uc__do_hook_add(UC_HOOK_INSN, rdtsc_cb, 1, 0, R.UC_X86_INS_RDTSC)
        uc._Uc__do_hook_add(UC_HOOK_INSN, cpuid_cb, 1, 0, R.UC_X86_INS_CPUID)

    def _interrupt(self, vector: int) -> None:
        """Hand `int n` or a fault to the PCPU (inside the hook, or for a sealed-page
        refusal after emu_start). Register writes made meanwhile are the
        hypervisor's, which the seal lets through."""
        seal = self.seal
        guest, seal.guest = seal.guest, False
        try:
            self.on_interrupt(vector)
        except BaseException as e:      # never unwind through C: stop and re-raise later
            self.hook_error = e
            self.uc.emu_stop()
        finally:
            seal.guest = guest

    def _sealed_fault(self) -> None:
        """The seal refused an access (EIP is at the instruction): deliver it as the
        #GP(0) a segment limit gives on Xen, leaving QEMU's exception state and
        error code as a real #GP would, for the PCPU's usual fault path."""
        ctx = self.uc.context_save()
        addr = ctypes.cast(ctx.context, ctypes.c_void_p).value
        ctypes.c_int32.from_address(addr + self._fault_state_offset).value = x86.GP
        ctypes.c_uint32.from_address(addr + self._fault_state_offset + ERROR_CODE_DELTA).value = 0
        self.uc.context_restore(ctx)
        self._interrupt(x86.GP)

    # ---- start-up probes -----------------------------------------------------
    def _run_probe(self, addr: int) -> list:
        seen = []

        def record(vector):
            seen.append((vector, self.eip(), self.cpl()))
            self.uc.emu_stop()
        self.on_interrupt = record
        self.uc.emu_start(addr, HV_EXIT_VA)
        return seen

    def _calibrate(self) -> None:
        uc = self.uc
        # CPUID leaf 1 as the emulated CPU answers it, with our APIC id in EBX[31:24].
        self.on_rdtsc = lambda: 0
        self._run_probe(self.probes["probe_cpuid"])
        a, b, c, d = (uc.reg_read(r) for r in (R.UC_X86_REG_EAX, R.UC_X86_REG_EBX,
                                              R.UC_X86_REG_ECX, R.UC_X86_REG_EDX))
        self.cpuid_leaf1 = (a, (b & 0x00FFFFFF) | (self.index << 24), c, d)
        # Find the exception-state field: -1 before a fault, the vector after.
        uc.context_restore(self.ring0)
        before = bytes(uc.context_save())
        first = self._run_probe(self.probes["probe_fault"])
        after = bytes(uc.context_save())
        if not first or first[0][0] != x86.PF:
            raise CoreSetupError(f"start-up fault probe saw {first!r}, expected a page fault")
        candidates = [off for off in range(0, len(before) - 3, 4)
                      if before[off:off + 4] == b"\xff\xff\xff\xff" and after[off:off + 4] != before[off:off + 4]
                      and int.from_bytes(after[off:off + 4], "little") < 32]
        for off in candidates:
            self._fault_state_offset = off
            self.reset_fault_state()
            self.write_reg(R.UC_X86_REG_EIP, self.probes["probe_fault"])
            again = self._run_probe(self.probes["probe_fault"])
            if again and again[0][0] == x86.PF:
                uc.context_restore(self.ring0)
                return
        raise CoreSetupError("cannot locate Unicorn's exception-state field; "
                             f"this Unicorn build is not supported (candidates {candidates})")

    def attach(self, on_interrupt, on_rdtsc) -> None:
        """Give the core to its PCPU loop: every `int n` and fault now reaches
        on_interrupt(vector), and rdtsc reads on_rdtsc()."""
        self.on_interrupt = on_interrupt
        self.on_rdtsc = on_rdtsc

    def measure_rate(self) -> float:
        """Instructions per second this core runs an ALU loop at (for estimates)."""
        import time
        self.uc.context_restore(self.ring0)
        self._run_probe(self.probes["probe_loop"])      # translate once
        self.uc.context_restore(self.ring0)
        t = time.perf_counter()
        self._run_probe(self.probes["probe_loop"])
        dt = time.perf_counter() - t
        self.uc.context_restore(self.ring0)
        return PROBE_LOOP_INSTRUCTIONS / dt

    def reset_fault_state(self) -> None:
        ctx = self.uc.context_save()
        addr = ctypes.cast(ctx.context, ctypes.c_void_p).value
        ctypes.memmove(addr + self._fault_state_offset, b"\xff\xff\xff\xff", 4)
        self.uc.context_restore(ctx)

    # ---- entering and leaving guests ------------------------------------------
    def enter(self, cr3: int, regs: dict) -> int:
        """Prepare a fresh entry into a guest: returns the address to start at.
        regs holds eip, cs, eflags, esp, ss, ds, es, fs, gs and any GPRs."""
        uc = self.uc
        uc.context_restore(self.ring0)
        self.seal.watch(cr3)
        uc.reg_write(R.UC_X86_REG_CR3, cr3)      # also flushes the soft TLB
        frame = _frame.pack(*(regs[name] for name in TRAMPOLINE_FRAME))
        self.ram.write(self.stack_pa + 4096 - _frame.size, frame)
        uc.reg_write(R.UC_X86_REG_ESP, self.stack_va + 4096 - _frame.size)
        for name, reg in (("eax", R.UC_X86_REG_EAX), ("ebx", R.UC_X86_REG_EBX),
                          ("ecx", R.UC_X86_REG_ECX), ("edx", R.UC_X86_REG_EDX),
                          ("esi", R.UC_X86_REG_ESI), ("edi", R.UC_X86_REG_EDI),
                          ("ebp", R.UC_X86_REG_EBP)):
            uc.reg_write(reg, regs.get(name, 0))
        return HV_TRAMPOLINE_VA

    def save(self) -> tuple:
        """The CPU state to resume later, possibly on another PCPU: (Unicorn context,
        iret frame, ESP offset). A context saved in the ring-0 trampoline (entered
        but not yet run: a fresh entry or a bounce) also keeps the frame it is about
        to pop, because that lives in this PCPU's stack page, which the next entry
        of another domain overwrites."""
        ctx = self.uc.context_save()
        eip = self.read_reg(R.UC_X86_REG_EIP)
        if HV_TRAMPOLINE_VA <= eip < HV_TRAMPOLINE_VA + 0x1000 and self.cpl() == 0:
            off = self.read_reg(R.UC_X86_REG_ESP) - self.stack_va
            return ctx, self.ram.read(self.stack_pa + off, 4096 - off), off
        return ctx, None, 0

    def restore(self, saved: tuple) -> int:
        """Switch to a saved guest context; returns its EIP."""
        ctx, frame, off = saved
        self.uc.context_restore(ctx)
        self.seal.watch(self.cr3())
        if frame is not None:          # re-create the pending iret frame on our own stack
            self.ram.write(self.stack_pa + off, frame)
            self.write_reg(R.UC_X86_REG_ESP, self.stack_va + off)
        self.flush_tlb()
        return self.read_reg(R.UC_X86_REG_EIP)

    def run(self, start: int) -> None:
        """Run until the hook stops the slice, another thread calls stop(), or an error.
        An exception raised by the interrupt handler is re-raised here. An access the
        seal refused reaches the interrupt handler as #GP(0)."""
        seal = self.seal
        seal.guest = True
        try:
            self.uc.emu_start(start, HV_EXIT_VA)
        except UcError:
            if seal.take_refusal() is None:
                raise
            seal.guest = False
            self._sealed_fault()
        finally:
            seal.guest = False
        if self.read_reg(R.UC_X86_REG_CS) & 3:
            # Out of the trampoline: the entry frame it consumed holds a domain's
            # registers and is dead now; leave none behind for whoever looks (the
            # seal keeps guests out; this is the second wall).
            self.ram.mem[self.stack_pa + 4096 - _frame.size:self.stack_pa + 4096] = _NO_FRAME
        if self.hook_error is not None:
            e, self.hook_error = self.hook_error, None
            raise e

    def stop(self) -> None:
        self.uc.emu_stop()

    # ---- register access ---------------------------------------------------
    def eip(self) -> int:
        return self.read_reg(R.UC_X86_REG_EIP)

    def set_eip(self, value: int) -> None:
        self.write_reg(R.UC_X86_REG_EIP, value)

    def cpl(self) -> int:
        return self.read_reg(R.UC_X86_REG_CS) & 3

    def cr3(self) -> int:
        return self.read_reg(R.UC_X86_REG_CR3)

    def cr2(self) -> int:
        return self.read_reg(R.UC_X86_REG_CR2)

    def entry_registers(self) -> list:
        """[CS, EAX, EBX, ECX, EDX, ESI, EDI] in one C call (ENTRY_REGS)."""
        self._c_read_batch(self._h, self._batch_ids, self._batch_ptrs, self._batch_n)
        return self._batch_list()

    def set_result(self, value: int) -> None:
        self.write_reg(R.UC_X86_REG_EAX, value)

    def set_cr3(self, cr3: int) -> None:
        """Load a new page directory (MMUEXT_NEW_BASEPTR); QEMU drops the soft TLB."""
        self.seal.watch(cr3)
        self.uc.reg_write(R.UC_X86_REG_CR3, cr3)

    def set_gdtr(self, base: int, limit: int) -> None:
        self.uc.reg_write(R.UC_X86_REG_GDTR, (0, base, limit, 0))

    def gdtr(self) -> tuple[int, int]:
        _, base, limit, _ = self.uc.reg_read(R.UC_X86_REG_GDTR)
        return base, limit

    def set_ldtr(self, selector: int, base: int, limit: int, flags: int) -> None:
        """Load LDTR's selector and descriptor cache directly (what lldt would load
        from the GDT). It is part of a saved context, as GDTR is."""
        self.uc.reg_write(R.UC_X86_REG_LDTR, (selector, base, limit, flags))

    def flush_tlb(self) -> None:
        """Drop the soft TLB (not part of a saved context, so needed on every switch)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def flush_translations(self) -> None:
        """Drop every translated block (code in RAM changed behind the core's back)."""
        self.uc.ctl_flush_tb()


__all__ = ["CpuCore", "CoreSetupError", "UcError"]
