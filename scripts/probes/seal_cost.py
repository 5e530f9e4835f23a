"""Probe: what the sealed hypervisor area (smpxen.pcpu.seal) costs the paths that
touch it, on one CpuCore (no machine, no PCPU loop), best of N rounds:

  fresh_entry_us             CpuCore.enter + the trampoline into ring 1, to an int3
  ring3_ring1_roundtrip_us   ring 3 `int 0x80` -> hook -> trampoline into a ring-1
                             handler -> its iretd back to ring 3 (what every trap or
                             system call from ring 3 costs on top of its handling)
  ring1_mov_ds_us            one `mov ds, ax` in ring 1 (a descriptor read)
  ring1_same_ring_iret_us    one iretd within ring 1 (how an event upcall returns)

Hypercalls and code that loads no segment never touch the sealed frames. Times are
this process's CPU time (time.process_time), so a busy host disturbs them less.

    python scripts/probes/seal_cost.py [ROUNDS]

Run it on two trees (PYTHONPATH=<other tree>) to compare."""
import json
import struct
import sys
import time

from keystone import KS_ARCH_X86, KS_MODE_32, Ks
from unicorn import x86_const as R

from smpxen.pcpu.bounce import Bouncer
from smpxen.pcpu.core import CpuCore
from smpxen.shm.boot import assemble_trampoline, format_hypervisor_region, hypervisor_l2_entries
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from smpxen.xen import arch_x86_32 as A

CODE, STK1, STK3 = 0x400000, 0x401000, 0x402000
SOURCE = """
ring1_entry:
    int3
ring1_seg_loop:
    mov ax, 0x821
seg1:
    mov ds, ax
    dec ecx
    jnz seg1
    int3
ring3_loop:
    int 0x80
    jmp ring3_loop
ring1_handler:
    iretd
same_ring_iret:
    pushfd
    .byte 0x0e          # push cs (keystone would add an operand-size prefix)
    call same_ring_target
    dec ecx
    jnz same_ring_iret
    int3
same_ring_target:
    iretd
"""
LABELS = ("ring1_entry", "ring1_seg_loop", "ring3_loop", "ring1_handler", "same_ring_iret")


class Bench:
    def __init__(self):
        self.ram = MachineRAM.create(16 << 20)
        self.ram.unlink()
        layout = Layout.compute(16 << 20, 2)
        format_hypervisor_region(self.ram, layout, FrameTable(self.ram, layout, Locks(self.ram.fd)))
        self.core = CpuCore(self.ram, layout, 0, assemble_trampoline()[1])
        self.bouncer = Bouncer(self.core, None)
        self.bouncer.calibrate_error_code()
        first = layout.hv_frames + 16
        l2, l1 = first, first + 1
        self.stack1 = first + 3
        pd = [0] * 1024
        for slot, entry in hypervisor_l2_entries(layout).items():
            pd[slot] = entry
        pd[CODE >> 22] = (l1 << 12) | 0x67
        self.ram.write(l2 << 12, struct.pack("<1024I", *pd))
        pt = [0] * 1024
        for i in range(3):
            pt[(CODE >> 12) + i & 1023] = ((first + 2 + i) << 12) | 0x67
        self.ram.write(l1 << 12, struct.pack("<1024I", *pt))
        ks = Ks(KS_ARCH_X86, KS_MODE_32)
        self.ram.write((first + 2) << 12, bytes(ks.asm(SOURCE, CODE)[0]))
        self.at = {name: struct.unpack("<I", bytes(ks.asm(f"{SOURCE}\n.long {name}", CODE)[0])[-4:])[0]
                   for name in LABELS}
        self.cr3 = l2 << 12
        self.calls, self.limit = 0, 0
        self.core.on_interrupt = self._interrupt

    def _interrupt(self, vector):
        if vector != 0x80:
            self.core.stop()
            return
        self.calls += 1
        if self.calls >= self.limit:
            self.core.stop()
            return
        # Bounce into the ring-1 handler, whose iretd returns to the ring-3 loop.
        _eip, _cs, eflags, _esp, _ss = self.bouncer.regs()
        frame = struct.pack("<5I", self.at["ring3_loop"], A.FLAT_RING3_CS, 0x202, STK3 + 0xF00,
                            A.FLAT_RING3_DS)
        self.ram.write((self.stack1 << 12) + 0xF00 - 20, frame)
        self.bouncer.enter_via_trampoline(dict(
            ds=A.FLAT_RING3_DS, es=A.FLAT_RING3_DS, fs=0, gs=0, eip=self.at["ring1_handler"],
            cs=A.FLAT_RING1_CS, eflags=eflags, esp=STK1 + 0xF00 - 20, ss=A.FLAT_RING1_DS))

    def enter(self, label, ring=1, **regs):
        cs, ds = (A.FLAT_RING1_CS, A.FLAT_RING1_DS) if ring == 1 else (A.FLAT_RING3_CS, A.FLAT_RING3_DS)
        frame = dict(eip=self.at[label], cs=cs, eflags=0x202, esp=(STK1 if ring == 1 else STK3) + 0xF00,
                     ss=ds, ds=ds, es=ds, fs=0, gs=0)
        frame.update(regs)
        return self.core.enter(self.cr3, frame)

    def fresh_entry_us(self, n=1000):
        t = time.process_time()
        for _ in range(n):
            self.core.run(self.enter("ring1_entry"))
        assert self.core.cpl() == 1
        return (time.process_time() - t) / n * 1e6

    def ring3_ring1_roundtrip_us(self, n=1000):
        self.calls, self.limit = 0, n
        start = self.enter("ring3_loop", ring=3)
        t = time.process_time()
        self.core.run(start)
        dt = time.process_time() - t
        assert self.calls == n
        return dt / n * 1e6

    def _loop(self, label, n):
        start = self.enter(label, ecx=n)
        t = time.process_time()
        self.core.run(start)
        dt = time.process_time() - t
        assert self.core.read_reg(R.UC_X86_REG_ECX) == 0
        return dt / n * 1e6

    def ring1_mov_ds_us(self, n=10000):
        return self._loop("ring1_seg_loop", n)

    def ring1_same_ring_iret_us(self, n=10000):
        return self._loop("same_ring_iret", n)


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bench = Bench()
    names = ("fresh_entry_us", "ring3_ring1_roundtrip_us", "ring1_mov_ds_us", "ring1_same_ring_iret_us")
    for name in names:                 # translate everything once
        getattr(bench, name)(10)
    best = {name: min(getattr(bench, name)() for _ in range(rounds)) for name in names}
    print(json.dumps({k: round(v, 2) for k, v in best.items()}))
    bench.ram.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
