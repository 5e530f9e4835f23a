"""Probe: writes that bypass a Unicorn core do not reach its translated code or its
soft TLB.

Code: a guest runs `mov eax, 1; int 0x80`. Another process then writes
`mov eax, 2` over it in the shared RAM: the core still returns 1 (the translated
block is reused), and so it does after uc.mem_write of the same bytes. Only
ctl_remove_cache on the range (or ctl_flush_tb) makes it run the new code. A store
by the guest itself into its own code is seen (QEMU's self-modifying-code check
covers the core's own writes only).

TLB: a guest reads a page; another process then points its PTE at another frame.
The core keeps reading the old frame, also after a context restore (the soft TLB
is not part of a context), until the TLB is flushed (UC_CTL_TLB_FLUSH, or a write
of CR3).

    python scripts/probes/tb_coherence.py

Exits 1 naming the point that no longer holds."""
import os
import struct
import sys

from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
from unicorn import x86_const as R

from _bare32 import CODE, PD, PT, PTE_P, PTE_RW, PTE_US, Bare32, asm

VA, FRAME_A, FRAME_B = 0x200000, 0x5000, 0x6000
SMC = CODE + 0x800


def eax_after(cpu: Bare32, start: int) -> int:
    cpu.run(cpu.enter(0, start))
    return cpu.reg(R.UC_X86_REG_EAX)


def write_from_other_process(ram, addr: int, data: bytes) -> None:
    pid = os.fork()
    if pid == 0:
        ram[addr:addr + len(data)] = data
        os._exit(0)
    os.waitpid(pid, 0)


def code_results() -> dict:
    cpu = Bare32()
    old, new = asm("mov eax, 1\n int 0x80", CODE), asm("mov eax, 2\n int 0x80", CODE)
    cpu.ram[CODE:CODE + len(old)] = old
    seen = {"before": eax_after(cpu, CODE)}
    write_from_other_process(cpu.ram, CODE, new)
    seen["other process wrote"] = eax_after(cpu, CODE)
    cpu.uc.mem_write(CODE, new)
    seen["uc.mem_write"] = eax_after(cpu, CODE)
    cpu.uc.ctl_remove_cache(CODE, CODE + len(new))
    seen["ctl_remove_cache"] = eax_after(cpu, CODE)
    third = asm("mov eax, 3\n int 0x80", CODE)
    cpu.ram[CODE:CODE + len(third)] = third
    cpu.uc.ctl_flush_tb()
    seen["Python wrote, ctl_flush_tb"] = eax_after(cpu, CODE)
    cpu.load(SMC, "mov byte ptr [patch + 1], 7\npatch:\n mov eax, 1\n int 0x80")
    seen["guest patched its own code"] = eax_after(cpu, SMC)
    return seen


def tlb_results() -> dict:
    cpu = Bare32()
    cpu.set_u32(FRAME_A, 0xAAAA)
    cpu.set_u32(FRAME_B, 0xBBBB)
    cpu.set_pte(VA, FRAME_A, PTE_P | PTE_RW | PTE_US)
    cpu.load(CODE, f"mov eax, dword ptr [{VA:#x}]\n int 0x80")
    seen = {"before": eax_after(cpu, CODE)}
    write_from_other_process(cpu.ram, PT + (VA >> 12) * 4,
                             struct.pack("<I", FRAME_B | PTE_P | PTE_RW | PTE_US))
    seen["other process changed the PTE"] = eax_after(cpu, CODE)
    cpu.uc.context_restore(cpu.uc.context_save())
    seen["context restored"] = eax_after(cpu, CODE)
    cpu.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
    seen["UC_CTL_TLB_FLUSH"] = eax_after(cpu, CODE)
    cpu.set_pte(VA, FRAME_A, PTE_P | PTE_RW | PTE_US)
    cpu.uc.reg_write(R.UC_X86_REG_CR3, PD)
    seen["PTE back, CR3 written"] = eax_after(cpu, CODE)
    return seen


def main() -> int:
    code, tlb = code_results(), tlb_results()
    print("code (eax the block returns): " + ", ".join(f"{k} {v}" for k, v in code.items()))
    print("TLB (frame read): " + ", ".join(f"{k} {v:#x}" for k, v in tlb.items()))
    want_code = {"before": 1, "other process wrote": 1, "uc.mem_write": 1, "ctl_remove_cache": 2,
                 "Python wrote, ctl_flush_tb": 3, "guest patched its own code": 7}
    want_tlb = {"before": 0xAAAA, "other process changed the PTE": 0xAAAA, "context restored": 0xAAAA,
                "UC_CTL_TLB_FLUSH": 0xBBBB, "PTE back, CR3 written": 0xAAAA}
    failures = [f"code, {k}: {code[k]} (expected {v})" for k, v in want_code.items() if code[k] != v]
    failures += [f"TLB, {k}: {tlb[k]:#x} (expected {v:#x})" for k, v in want_tlb.items() if tlb[k] != v]
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
