"""The sealed hypervisor area (smpxen/pcpu/seal.py) on one core running small ring-1
and ring-3 programs: from rings 1 and 3 nothing at or above 0xFC400000 is readable
or writable and 0xFC000000-0xFC3FFFFF is the read-only M2P table only, while the
CPU still reads descriptors there. The Unicorn behaviour it rests on is
scripts/probes/sealed_pages.py (tests/machine/test_probes.py runs it)."""
from __future__ import annotations

import struct

import pytest
from keystone import KS_ARCH_X86, KS_MODE_32, Ks
from unicorn import x86_const as R

from smpxen.arch import x86
from smpxen.pcpu.bounce import Bouncer
from smpxen.pcpu.core import CpuCore
from smpxen.pcpu.seal import MEM, NONE, STACK, decode_segment_load
from smpxen.shm.boot import assemble_trampoline, format_hypervisor_region, hypervisor_l2_entries
from smpxen.shm.domains import DomainTable
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import HV_GDT_VA, HV_STACKS_VA, HV_TRAMPOLINE_VA, Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from smpxen.xen import arch_x86_32 as A

_ks = Ks(KS_ARCH_X86, KS_MODE_32)


def asm(source: str, address: int = 0) -> bytes:
    return bytes(_ks.asm(source, address)[0])


# ---- decoding the instructions whose descriptor reads are allowed -----------------------
@pytest.mark.parametrize("source, form", [
    ("mov ds, ax", (NONE,)),
    (".byte 0x8e, 0xc3", (NONE,)),                        # mov es, bx
    (".byte 0x1f", (STACK, 4)),                           # pop ds
    (".byte 0x66, 0x1f", (STACK, 2)),
    (".byte 0x07", (STACK, 4)),                           # pop es
    (".byte 0x17", (STACK, 4)),                           # pop ss
    ("pop fs", (STACK, 4)),
    ("pop gs", (STACK, 4)),
    ("iretd", (STACK, 20)),
    ("retf", (STACK, 16)),
    ("retf 8", (STACK, 24)),
    ("ljmp 0x19:0x1234", (NONE,)),
    ("lcall 0x19:0x1234", (NONE,)),
    ("lar eax, ebx", (NONE,)),
    ("verr ax", (NONE,)),
])
def test_decode_register_and_stack_forms(source, form):
    assert decode_segment_load(asm(source) + b"\x90" * 8) == form


@pytest.mark.parametrize("source, segment, base, index, scale, disp, size", [
    ("mov es, word ptr [ebx + 4]", 3, 3, None, 1, 4, 2),
    ("lds eax, [ecx]", 3, 1, None, 1, 0, 6),
    ("lss esp, [esp + 8]", 2, 4, None, 1, 8, 6),
    ("lfs eax, fs:[eax*4 + 8]", 4, None, 0, 4, 8, 6),
    ("ljmp [eax]", 3, 0, None, 1, 0, 6),
    ("lcall [ebp - 2]", 2, 5, None, 1, -2, 6),
    ("lsl eax, dword ptr [0x1000]", 3, None, None, 1, 0x1000, 2),
    ("verw word ptr [esi]", 3, 6, None, 1, 0, 2),
])
def test_decode_memory_forms(source, segment, base, index, scale, disp, size):
    kind, operand, n = decode_segment_load(asm(source) + b"\x90" * 8)
    assert kind == MEM and n == size
    assert operand == (segment, base, index, scale, disp, False)


@pytest.mark.parametrize("source", [
    "mov eax, dword ptr [0xfc400000]", "push ds", "mov ax, ds", "add eax, ebx", "sgdt [eax]",
])
def test_decode_other_instructions_are_not_segment_loads(source):
    assert decode_segment_load(asm(source) + b"\x90" * 8) is None


def test_decode_truncated_is_refused():
    assert decode_segment_load(asm("lds eax, [ecx + 0x12345678]")[:3]) is None

# ---- one core against the seal -------------------------------------------------------------
CODE_VA, STACK_VA, USTACK_VA, DATA_VA = 0x400000, 0x401000, 0x402000, 0x403000


class Core:
    """A CpuCore over a 16 MiB machine with one guest address space: code, a ring-1
    stack, a ring-3 stack and a data page at 4 MiB, plus Xen's hypervisor slots."""

    def __init__(self, perdomain_l1s=()):
        self.ram = MachineRAM.create(16 << 20)
        self.ram.unlink()
        self.layout = layout = Layout.compute(16 << 20, 2)
        format_hypervisor_region(self.ram, layout, FrameTable(self.ram, layout, Locks(self.ram.fd)))
        slots = DomainTable(self.ram, layout).slots
        for i, mfn in enumerate(perdomain_l1s):      # domains the core finds at start
            slots[i].state, slots[i].perdomain_pt_mfn = 1, mfn
        self.core = CpuCore(self.ram, layout, 0, assemble_trampoline()[1])
        self.bouncer = Bouncer(self.core, None)
        self.bouncer.calibrate_error_code()
        first = layout.hv_frames + 16
        l2, l1 = first, first + 1
        self.frames = {CODE_VA: first + 2, STACK_VA: first + 3, USTACK_VA: first + 4,
                       DATA_VA: first + 5}
        pd = [0] * 1024
        for slot, entry in hypervisor_l2_entries(layout).items():
            pd[slot] = entry
        pd[CODE_VA >> 22] = (l1 << 12) | 0x67
        self.ram.write(l2 << 12, struct.pack("<1024I", *pd))
        pt = [0] * 1024
        for va, mfn in self.frames.items():
            pt[(va >> 12) & 1023] = (mfn << 12) | 0x67           # present, rw, user, A, D
        self.ram.write(l1 << 12, struct.pack("<1024I", *pt))
        self.cr3 = l2 << 12
        self.seen = []
        self.core.on_interrupt = self._record

    def _record(self, vector):
        core = self.core
        soft = vector in (3, 0x80)
        code = None if soft else self.bouncer.consume_fault()
        self.seen.append((vector, core.eip(), core.cpl(), code,
                          core.cr2() if vector == x86.PF else None))
        core.stop()

    def run(self, source: str, ring: int = 1, ldt: bytes | None = None, flush: bool = True,
            **regs) -> tuple:
        """Run `source` (ending in int3) in `ring`, with `ldt` (descriptors) as the
        LDT at DATA_VA if given; the first trap it takes. flush=False keeps code
        translated earlier (the frame must hold `source` already)."""
        code = asm(source, CODE_VA)
        if flush:
            self.ram.write(self.frames[CODE_VA] << 12, code.ljust(0x1000, b"\xcc"))
            self.core.flush_translations()
        cs, ds = (A.FLAT_RING1_CS, A.FLAT_RING1_DS) if ring == 1 else (A.FLAT_RING3_CS, A.FLAT_RING3_DS)
        esp = (STACK_VA if ring == 1 else USTACK_VA) + 0xF00
        frame = dict(eip=CODE_VA, cs=cs, eflags=0x202, esp=esp, ss=ds, ds=ds, es=ds, fs=0, gs=0)
        frame.update(regs)
        self.seen.clear()
        start = self.core.enter(self.cr3, frame)
        if ldt is not None:
            self.ram.write(self.frames[DATA_VA] << 12, ldt)
            self.core.set_ldtr(0, DATA_VA, len(ldt) - 1, 0x8200)
        self.core.run(start)
        return self.seen[0]

    def label(self, source: str, name: str) -> int:
        """Address of `name` in `source` assembled at CODE_VA."""
        return struct.unpack("<I", asm(f"{source}\n.long {name}", CODE_VA)[-4:])[0]

    def close(self):
        self.ram.close()


@pytest.fixture
def core():
    c = Core()
    yield c
    c.close()

GP0 = (x86.GP, 0)


def test_ring1_explicit_reads_of_every_sealed_page_are_gp0(core):
    sealed = [HV_GDT_VA, HV_TRAMPOLINE_VA, HV_STACKS_VA, HV_STACKS_VA + 0x1000]
    for va in sealed + [HV_GDT_VA + 0x808, HV_STACKS_VA + 0xFFC]:
        src = f"nop\nload: mov eax, dword ptr [{va:#x}]\nint3"
        vector, eip, cpl, code, _ = core.run(src)
        assert (vector, code, cpl) == (*GP0, 1), hex(va)
        assert eip == core.label(src, "load")


def test_ring1_segment_loads_read_the_gdt(core):
    src = """
        mov ax, 0x833
        mov es, ax
        push 0x821
        .byte 0x07
        lar ebx, eax
        sete cl
        int3
    """
    vector, eip, cpl, code, _ = core.run(src)
    assert (vector, cpl) == (x86.BP, 1)
    assert core.core.read_reg(R.UC_X86_REG_ES) & 0xFFFF == A.FLAT_RING1_DS
    assert core.core.read_reg(R.UC_X86_REG_ECX) & 0xFF == 1          # lar found the descriptor


def test_ring1_iret_to_ring3_and_back_through_the_trampoline(core):
    src = f"""
        push {A.FLAT_RING3_DS}
        push {USTACK_VA + 0xF00}
        push 0x202
        push {A.FLAT_RING3_CS}
        push {CODE_VA + 0x100}
        iretd
    """
    code = asm(src, CODE_VA).ljust(0x100, b"\x90") + asm("mov eax, cs\nint 0x80", CODE_VA + 0x100)
    core.ram.write(core.frames[CODE_VA] << 12, code.ljust(0x1000, b"\xcc"))
    core.core.flush_translations()
    core.seen.clear()
    frame = dict(eip=CODE_VA, cs=A.FLAT_RING1_CS, eflags=0x202, esp=STACK_VA + 0xF00,
                 ss=A.FLAT_RING1_DS, ds=A.FLAT_RING1_DS, es=A.FLAT_RING1_DS, fs=0, gs=0)
    core.core.run(core.core.enter(core.cr3, frame))
    assert core.seen[0][:3] == (0x80, CODE_VA + 0x104, 3)
    assert core.core.read_reg(R.UC_X86_REG_EAX) & 0xFFFF == A.FLAT_RING3_CS


@pytest.mark.parametrize("source", [
    # A segment load whose explicit operand is in the sealed area: its reads there
    # are the instruction's own, not the CPU's descriptor reads.
    f"mov esp, {HV_GDT_VA + 0x808:#x}\nload: .byte 0x1f\nint3",            # pop ds off the GDT
    f"mov esp, {HV_GDT_VA + 0x804:#x}\nload: iretd\nint3",                  # an iret frame in it
    f"mov esp, {HV_GDT_VA + 0x808:#x}\nload: retf\nint3",
    f"load: lds eax, [{HV_GDT_VA + 0x810:#x}]\nint3",
    f"mov ebx, {HV_GDT_VA + 0x808:#x}\nload: ljmp [ebx]\nint3",
    f"load: mov ds, word ptr [{HV_GDT_VA + 0x808:#x}]\nint3",
    f"load: lar eax, word ptr [{HV_GDT_VA + 0x808:#x}]\nint3",
    f"mov esp, {HV_STACKS_VA + 0xFDC:#x}\nload: .byte 0x1f\nint3",          # a ring-0 stack
])
def test_ring1_segment_loads_with_sealed_operands_are_gp0(core, source):
    vector, eip, cpl, code, _ = core.run(source)
    assert (vector, code, cpl) == (*GP0, 1)
    assert eip == core.label(source, "load")


def test_segment_bases_count_for_the_operand_rule(core):
    # SS from the LDT with a base just below the M2P table (check_descriptor allows
    # it): SS:0x2808 is a descriptor in Xen's GDT although ESP is small, so the pop
    # would look like the CPU's own descriptor read were the base taken as 0.
    ldt = bytes(8) + x86.make_segment(0xFC3FE000, 0xFFFFF, 0xB2)
    src = "mov ax, 0x0D\nmov ss, ax\nmov esp, 0x2808\nload: .byte 0x1f\nint3"
    vector, eip, cpl, code, _ = core.run(src, ldt=ldt)
    assert (vector, code, cpl, eip) == (*GP0, 1, core.label(src, "load"))
    # The same pop from an SS based at the code page reads our own stack page.
    core.ram.write((core.frames[STACK_VA] << 12) + 0xF00, struct.pack("<I", A.FLAT_RING1_DS))
    ldt = bytes(8) + x86.make_segment(CODE_VA, 0xFFFFF, 0xB2)
    src = "mov ax, 0x0D\nmov ss, ax\nmov esp, 0x1F00\nmov ax, 0\nmov ds, ax\n.byte 0x1f\nint3"
    assert core.run(src, ldt=ldt)[0] == x86.BP
    assert core.core.read_reg(R.UC_X86_REG_DS) & 0xFFFF == A.FLAT_RING1_DS


def test_ring1_fetch_from_the_trampoline_is_gp0(core):
    vector, eip, cpl, code, _ = core.run(f"mov eax, {HV_TRAMPOLINE_VA:#x}\njmp eax")
    assert (vector, code, cpl, eip) == (*GP0, 1, HV_TRAMPOLINE_VA)


def test_writes_and_ring3_accesses_are_the_mmu_page_faults(core):
    vector, _, cpl, code, cr2 = core.run(f"mov dword ptr [{HV_GDT_VA:#x}], eax\nint3")
    assert (vector, cpl, code, cr2) == (x86.PF, 1, 3, HV_GDT_VA)        # present, write
    vector, _, cpl, code, cr2 = core.run(f"mov eax, dword ptr [{HV_STACKS_VA:#x}]\nint3", ring=3)
    assert (vector, cpl, code, cr2) == (x86.PF, 3, 5, HV_STACKS_VA)     # present, user
    vector, _, cpl, code, cr2 = core.run(f"mov eax, dword ptr [{A.MACH2PHYS_VIRT_START:#x}]\n"
                                         "mov dword ptr [0xFC000000], eax\nint3", ring=3)
    assert (vector, cpl, code, cr2) == (x86.PF, 3, 7, A.MACH2PHYS_VIRT_START)   # M2P: read-only


def test_a_refusal_does_not_stay_cached(core):
    src = "mov ax, 0x821\nmov ds, ax\nload: mov eax, dword ptr [0xFC400808]\nint3"
    for _ in range(3):
        vector, eip, _, code, _ = core.run(src)
        assert (vector, code, eip) == (*GP0, core.label(src, "load"))


def test_ram_around_perdomain_l1s_keeps_every_frame_its_own_code():
    # The core maps RAM in pieces around each domain's PERDOMAIN L1 (MMIO). Mapped in
    # address order, the piece after the first view got the RAM offsets of the piece
    # before it (scripts/probes/sealed_pages.py, fact 6), and code translated for a
    # frame there ran for the frame as far into the next piece.
    layout = Layout.compute(16 << 20, 2)
    first = layout.hv_frames + 16
    c = Core(perdomain_l1s=(first + 10, first + 400))
    try:
        a = layout.hv_frames + 2                       # in the piece [hv_l1, first + 10)
        b = first + 11 + (a - layout.hv_l1_mfn)         # as far into [first + 11, first + 400)
        for mfn in (a, b):
            c.ram.write(mfn << 12, asm(f"mov eax, {mfn}\nint3", CODE_VA).ljust(0x1000, b"\xcc"))
        pte = ((first + 1) << 12) + ((CODE_VA >> 12) & 1023) * 4
        for mfn in (a, b, a):                          # no translation is dropped meanwhile
            c.ram.write(pte, struct.pack("<I", (mfn << 12) | 0x67))
            assert c.run(f"mov eax, {mfn}\nint3", flush=False)[0] == x86.BP
            assert c.core.read_reg(R.UC_X86_REG_EAX) == mfn
    finally:
        c.close()


def test_the_entry_frame_is_scrubbed_once_consumed(core):
    top = (core.layout.stack_mfn(0) << 12) + 4096 - 36
    core.run("int3", eip=CODE_VA, eflags=0x202)
    assert core.ram.read(top, 36) == bytes(36)


def test_the_hypervisor_still_loads_selectors_itself(core):
    core.run("int3")                                         # leave the core in ring 1
    core.core.write_reg(R.UC_X86_REG_DS, A.FLAT_RING3_DS)    # reads the GDT outside the guest
    assert core.core.read_reg(R.UC_X86_REG_DS) & 0xFFFF == A.FLAT_RING3_DS
