"""Probe: after the interrupt hook writes EIP with uc_reg_write, a later
asynchronous stop can leave EIP stale, and the guest runs old instructions again.

uc_reg_write(EIP) sets Unicorn's skip_sync_pc_on_exit, which stays set until the
next stop; that stop then exits without writing the block's address to EIP, so
EIP reads whatever the translated code last stored. uc_reg_write_batch changes
EIP without the flag (smpxen.pcpu.ucpatch.RegisterWriter). The guest below makes
a system call through `int 0x80`, which the hook redirects to a handler (as
smpxen's fast trap does); the handler counts its runs. Every count must stay
within one of the others; with uc_reg_write the handler's count runs ahead.

    python scripts/probes/hook_eip_write.py [SECONDS]

Seen on a 2-core host, Unicorn 2.1.4, 20 s each (~60 000 stops): the handler ran
11 times more than the system call with uc_reg_write, 0 with the batch write."""
import sys
import threading
import time

from keystone import KS_ARCH_X86, KS_MODE_32, Ks
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn.x86_const import UC_X86_REG_EIP

from smpxen.pcpu.ucpatch import RegisterWriter, forbid_mid_instruction_exits

CODE_VA, EXIT_VA = 0x1000, 0xF000
BODY = """
loop:
  inc dword ptr [0x8000]
  int 0x80
back:
  jmp loop
"""
HANDLER = """
handler:
  inc dword ptr [0x8004]
  jmp back
"""


def excess_handler_runs(seconds: float, batch: bool) -> int:
    ks = Ks(KS_ARCH_X86, KS_MODE_32)
    code, _ = ks.asm(BODY + HANDLER, CODE_VA)
    body, _ = ks.asm(BODY, CODE_VA)
    handler_va = CODE_VA + len(body)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    forbid_mid_instruction_exits(uc._uch)     # isolate this race from the other one
    uc.mem_write(CODE_VA, bytes(code))
    write = RegisterWriter(uc._uch)
    syscalls = [0]

    def hook(uc, _vector, _user):
        syscalls[0] += 1
        if batch:
            write(UC_X86_REG_EIP, handler_va)
        else:
            uc.reg_write(UC_X86_REG_EIP, handler_va)
    uc.hook_add(UC_HOOK_INTR, hook)
    state = {"running": False, "done": False}

    def watcher():
        while not state["done"]:
            time.sleep(0.0002)
            if state["running"]:
                uc.emu_stop()
    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    eip, give_up = CODE_VA, time.monotonic() + seconds
    while time.monotonic() < give_up:
        state["running"] = True
        uc.emu_start(eip, EXIT_VA)
        state["running"] = False
        eip = uc.reg_read(UC_X86_REG_EIP)
    state["done"] = True
    thread.join()
    handler_runs = int.from_bytes(uc.mem_read(0x8004, 4), "little")
    return max(0, handler_runs - syscalls[0])


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    single, batch = excess_handler_runs(seconds, False), excess_handler_runs(seconds, True)
    print(f"{seconds:g} s each: the handler ran {single} extra times with uc_reg_write, "
          f"{batch} with uc_reg_write_batch")
    return 0 if batch == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
