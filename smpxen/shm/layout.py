"""Where things live in machine RAM.

Physical frames [0, hv_frames) form the reserved hypervisor region; the rest is the
free pool domains are built from. Everything a guest can see or the PCPUs must
share is here, so every PCPU process reads the same state:

  frame 0                 MachineHeader (global hypervisor state)
  gdt                     Xen's default GDT (the 40 reserved entries)       sealed
  trampoline              ring-0 code the PCPUs use to enter a guest        sealed
                          (pop segs; iretd)
  ring-0 stacks           one page per PCPU, holding the iret frame         sealed
  perdomain window        32 pages standing for the PERDOMAIN mappings      sealed
  hv_l1                   L1 mapping gdt/trampoline/stacks read-only at PAGE_OFFSET
  idle_pd                 page directory with only the hypervisor slots (idle CPU;
                          smpxen.mm copies its slots >= 1008 into every guest L2)
  probe_pd, probe_l1      idle_pd's slots plus the probe page at HV_PROBE_VA, the
  probe                   start-up probes' address space (no guest maps it)
  m2p_l1                  L1 mapping the machine->phys table read-only at 0xFC000000
  m2p                     machine_to_phys_mapping: one u32 per frame
  frame table             one FrameInfo per frame (owner, counts, type, flush stamp)
  domain table            one DomainInfo per domain slot
  event channels          one table of NR_EVENT_CHANNELS ports per domain slot
  trace buffers           trace_pages per PCPU, if any (smpxen/xen/trace.py); Domain-0
                          reads them (DOM0_GETTBUFS), only their PCPU writes them

Guests map none of this writable; only the M2P table (user-readable) and the entry
machinery (supervisor-only) are mapped at all, through Xen's L2 slots 1008..1023.
The frames [gdt, hv_l1) are sealed: every PCPU core serves them through checked
MMIO (smpxen.pcpu.seal), so ring 1 and ring 3 cannot read them although the CPU
reads the GDT through them (Xen 2.0 keeps guests out with segment limits, which
QEMU does not check). The PERDOMAIN window is what the CPU sees in place of the
current domain's PERDOMAIN mappings (its GDT frames and LDT shadow, which are the
domain's own frames and stay RAM for its own mappings): page k of the window reads
the frame in entry k of that domain's PERDOMAIN L1."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from smpxen.xen.arch_x86_32 import MACH2PHYS_VIRT_START, PAGE_OFFSET, PAGE_SIZE

MAX_PCPUS = 128
MAX_DOMAINS = 256            # the default machine at 128 PCPUs has 129
EVTCHN_ENTRY_SIZE = 8
NR_EVENT_CHANNELS = 1024

# Virtual addresses of the hypervisor pages inside every address space.
HV_GDT_VA = PAGE_OFFSET                      # 0xFC400000
HV_TRAMPOLINE_VA = PAGE_OFFSET + 0x1000
HV_STACKS_VA = PAGE_OFFSET + 0x2000          # + index * PAGE_SIZE
# emu_start's "until": never executed. When emu_start returns, Unicorn translates
# until-1 as an instruction fetch in the current mode (to drop cached code there);
# a page that faults for the current ring leaves a phantom fault in QEMU's state
# that turns the next real #PF into a #DF (scripts/probes/exit_address.py). So it
# lies in the first page of the M2P table: present and user-readable in every
# address space, and public anyway (the trampoline page it once aliased is sealed).
HV_EXIT_VA = MACH2PHYS_VIRT_START + 0xFF0
# Start-up probes (CpuCore._calibrate, measure_rate) run in ring 0 on probe_pd from
# a page no guest address space maps (hypervisor L2 slot 1010 is only in probe_pd).
HV_PROBE_VA = PAGE_OFFSET + (1 << 22)        # 0xFC800000
# Xen's PERDOMAIN slot (config.h): a per-domain hypervisor L1 mapping the domain's
# GDT frames (entries 0..15) and LDT shadow (16..31) read-only; its L2 slot is
# filled per domain when an L2 is validated (smpxen.mm).
PERDOMAIN_VIRT_START = 0xFF400000
PERDOMAIN_SLOT = PERDOMAIN_VIRT_START >> 22  # 1021
GDT_VIRT_START = PERDOMAIN_VIRT_START
LDT_VIRT_START = GDT_VIRT_START + (16 << 12)
PERDOMAIN_PAGES = 32                         # entries 0..15 GDT frames, 16..31 LDT shadow


def pages(nbytes: int) -> int:
    return (nbytes + PAGE_SIZE - 1) // PAGE_SIZE


@dataclass(frozen=True)
class Layout:
    ram_bytes: int
    nr_pcpus: int
    nr_frames: int
    header_mfn: int
    gdt_mfn: int
    trampoline_mfn: int
    stacks_mfn: int
    window_mfn: int
    hv_l1_mfn: int
    idle_pd_mfn: int
    probe_pd_mfn: int
    probe_l1_mfn: int
    probe_mfn: int
    m2p_l1_mfn: int
    m2p_mfn: int
    m2p_frames: int
    frametable_mfn: int
    frametable_frames: int
    domtable_mfn: int
    domtable_frames: int
    evtchn_mfn: int
    evtchn_frames: int
    hv_frames: int          # first frame of the free pool
    tbuf_mfn: int = 0       # PCPU i's trace buffer: trace_pages frames from tbuf_mfn + i * trace_pages
    trace_pages: int = 0

    @classmethod
    def compute(cls, ram_bytes: int, nr_pcpus: int, check: bool = True, trace_pages: int = 0) -> "Layout":
        from smpxen.shm.frametable import FrameInfo
        from smpxen.shm.domains import DomainInfo
        if not 1 <= nr_pcpus <= MAX_PCPUS:
            raise ValueError(f"nr_pcpus must be 1..{MAX_PCPUS}")
        nr_frames = ram_bytes // PAGE_SIZE
        cur = 0

        def take(n):
            nonlocal cur
            start = cur
            cur += n
            return start

        header = take(1)
        gdt = take(1)
        tramp = take(1)
        stacks = take(nr_pcpus)
        window = take(PERDOMAIN_PAGES)
        hv_l1 = take(1)
        idle_pd = take(1)
        probe_pd = take(1)
        probe_l1 = take(1)
        probe = take(1)
        m2p_l1 = take(1)
        m2p_frames = pages(nr_frames * 4)
        m2p = take(m2p_frames)
        ft_frames = pages(nr_frames * ctypes.sizeof(FrameInfo))
        ft = take(ft_frames)
        dt_frames = pages(MAX_DOMAINS * ctypes.sizeof(DomainInfo))
        dt = take(dt_frames)
        ev_frames = pages(MAX_DOMAINS * NR_EVENT_CHANNELS * EVTCHN_ENTRY_SIZE)
        ev = take(ev_frames)
        tbufs = take(nr_pcpus * trace_pages)
        if check and cur + 16 > nr_frames:
            raise ValueError(f"{ram_bytes >> 20} MiB of RAM cannot hold the hypervisor region")
        return cls(ram_bytes, nr_pcpus, nr_frames, header, gdt, tramp, stacks, window, hv_l1,
                   idle_pd, probe_pd, probe_l1, probe, m2p_l1, m2p, m2p_frames, ft, ft_frames,
                   dt, dt_frames, ev, ev_frames, cur, tbufs, trace_pages)

    @staticmethod
    def reserve_bytes(nr_pcpus: int, ram_bytes: int) -> int:
        """Bytes the hypervisor region takes (for config validation)."""
        return Layout.compute(ram_bytes, nr_pcpus, check=False).hv_frames * PAGE_SIZE

    @property
    def sealed_mfns(self) -> range:
        """The frames guests' page tables reach above PAGE_OFFSET (GDT, trampoline,
        ring-0 stacks, the PERDOMAIN window): the CPU must read them, ring 1 and
        ring 3 must not."""
        return range(self.gdt_mfn, self.window_mfn + PERDOMAIN_PAGES)

    def stack_mfn(self, pcpu: int) -> int:
        return self.stacks_mfn + pcpu

    def stack_va(self, pcpu: int) -> int:
        return HV_STACKS_VA + pcpu * PAGE_SIZE

    def tbuf_maddr(self, pcpu: int) -> int:
        """Machine address of PCPU `pcpu`'s trace buffer (its t_buf header)."""
        return (self.tbuf_mfn + pcpu * self.trace_pages) * PAGE_SIZE

    @property
    def m2p_va(self) -> int:
        return MACH2PHYS_VIRT_START

    def to_args(self) -> list:
        return [self.ram_bytes, self.nr_pcpus]
