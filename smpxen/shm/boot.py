"""Formats the hypervisor region of a fresh machine RAM (machine process, before any
PCPU runs): frame table and free pool, Xen's default GDT, the ring-0 entry
trampoline, the start-up probe page, and the L1 tables every guest address space
shares for the hypervisor's top 64 MiB (read-only M2P table, read-only entry
machinery; the entry machinery is sealed by each PCPU core, smpxen.pcpu.seal)."""
from __future__ import annotations

import struct

from smpxen.arch.x86 import make_segment
from smpxen.shm.layout import HV_PROBE_VA, HV_TRAMPOLINE_VA, Layout
from smpxen.xen import arch_x86_32 as A

# Ring-0 code a PCPU executes to enter a guest: it loads the guest's data segments
# and irets into ring 1 or 3 using the frame the PCPU wrote on its ring-0 stack.
# Loading a bad selector or a bad iret frame faults here, at ring 0: that is when
# Xen uses the guest's failsafe callback. The page holds nothing else: it is sealed,
# so the core runs it from an uncached MMIO window, and every instruction here costs.
TRAMPOLINE_ASM = """
enter_guest:
    pop gs
    pop fs
    .byte 0x07      # pop es (keystone wrongly adds an operand-size prefix)
    .byte 0x1f      # pop ds (likewise)
    iretd
"""
# Ring-0 start-up probes (CpuCore._calibrate, measure_rate), in their own page at
# HV_PROBE_VA, mapped in idle_pd only.
PROBES_ASM = """
probe_cpuid:
    mov eax, 1
    cpuid
    int3
probe_fault:
    mov eax, dword ptr [0]
    int3
probe_loop:
    mov ecx, 250000
probe_loop_body:
    add eax, ecx
    xor edx, eax
    dec ecx
    jnz probe_loop_body
    int3
"""
PROBE_LOOP_INSTRUCTIONS = 1 + 4 * 250000
PROBE_SYMBOLS = ("probe_cpuid", "probe_fault", "probe_loop")
# Order of the frame the trampoline consumes (lowest address first).
TRAMPOLINE_FRAME = ("gs", "fs", "es", "ds", "eip", "cs", "eflags", "esp", "ss")

_FLAT_PAGES = 0xFC3FF   # Xen 2.0's guest segments: 0 .. 0xFC3FFFFF (includes the M2P)


def default_gdt() -> bytes:
    """Xen's reserved entries 256..295 (xen/arch/x86/boot/x86_32.S gdt_table)."""
    gdt = bytearray((A.LAST_RESERVED_GDT_ENTRY + 1) * 8)

    def put(selector, desc):
        idx = selector >> 3
        gdt[idx * 8:idx * 8 + 8] = desc

    put(A.HYPERVISOR_CS, make_segment(0, 0xFFFFF, 0x9A))   # ring 0 code
    put(A.HYPERVISOR_DS, make_segment(0, 0xFFFFF, 0x92))   # ring 0 data
    put(A.FLAT_RING1_CS, make_segment(0, _FLAT_PAGES, 0xBA))
    put(A.FLAT_RING1_DS, make_segment(0, _FLAT_PAGES, 0xB2))
    put(A.FLAT_RING3_CS, make_segment(0, _FLAT_PAGES, 0xFA))
    put(A.FLAT_RING3_DS, make_segment(0, _FLAT_PAGES, 0xF2))
    return bytes(gdt)


def _assemble(source: str, address: int, symbols: tuple = ()) -> tuple[bytes, dict[str, int]]:
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks
    tail = "".join(f"\n.long {sym}" for sym in symbols)
    code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(source + tail, address)
    code = bytes(code)
    n = len(symbols)
    addrs = struct.unpack(f"<{n}I", code[len(code) - 4 * n:])
    return code[:len(code) - 4 * n], dict(zip(symbols, addrs))


def assemble_trampoline() -> tuple[bytes, dict[str, int]]:
    """The trampoline's bytes and the addresses of the start-up probe entry points."""
    return _assemble(TRAMPOLINE_ASM, HV_TRAMPOLINE_VA)[0], assemble_probes()[1]


def assemble_probes() -> tuple[bytes, dict[str, int]]:
    return _assemble(PROBES_ASM, HV_PROBE_VA, PROBE_SYMBOLS)


def format_hypervisor_region(ram, layout: Layout, frametable) -> None:
    frametable.format()
    ram.write(layout.gdt_mfn << 12, default_gdt())
    ram.write(layout.trampoline_mfn << 12, assemble_trampoline()[0])
    ram.write(layout.probe_mfn << 12, assemble_probes()[0])
    ro = A._PAGE_PRESENT | A._PAGE_ACCESSED
    # hv_l1: GDT, trampoline, ring-0 stacks at PAGE_OFFSET, read-only and
    # supervisor-only (ring 3 faults on them; ring 1 is kept out by the seal).
    hv = [0] * 1024
    hv[0] = (layout.gdt_mfn << 12) | ro
    hv[1] = (layout.trampoline_mfn << 12) | ro
    for i in range(layout.nr_pcpus):
        hv[2 + i] = (layout.stack_mfn(i) << 12) | ro
    ram.write(layout.hv_l1_mfn << 12, struct.pack("<1024I", *hv))
    # m2p_l1: the machine->phys table at 0xFC000000, read-only, readable from ring 3.
    m2p = [0] * 1024
    for i in range(layout.m2p_frames):
        m2p[i] = ((layout.m2p_mfn + i) << 12) | ro | A._PAGE_USER
    ram.write(layout.m2p_l1_mfn << 12, struct.pack("<1024I", *m2p))
    # idle_pd: what a PCPU runs on when it runs no domain; its slots are the ones
    # every guest L2 gets. probe_pd adds the probe page, for the start-up probes.
    idle = [0] * 1024
    for slot, entry in hypervisor_l2_entries(layout).items():
        idle[slot] = entry
    ram.write(layout.idle_pd_mfn << 12, struct.pack("<1024I", *idle))
    idle[HV_PROBE_VA >> 22] = (layout.probe_l1_mfn << 12) | ro
    ram.write(layout.probe_pd_mfn << 12, struct.pack("<1024I", *idle))
    probe = [0] * 1024
    probe[(HV_PROBE_VA >> 12) & 1023] = (layout.probe_mfn << 12) | ro
    ram.write(layout.probe_l1_mfn << 12, struct.pack("<1024I", *probe))


def hypervisor_l2_entries(layout: Layout) -> dict[int, int]:
    """The L2 slots (>= 1008) Xen installs in every guest page directory: the M2P
    table (user-readable, as in Xen) and the entry machinery (supervisor-only)."""
    ro = A._PAGE_PRESENT | A._PAGE_ACCESSED
    return {
        A.MACH2PHYS_VIRT_START >> 22: (layout.m2p_l1_mfn << 12) | ro | A._PAGE_USER,
        A.PAGE_OFFSET >> 22: (layout.hv_l1_mfn << 12) | ro,
    }
