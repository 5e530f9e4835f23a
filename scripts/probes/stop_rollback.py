"""Probe: an emu_stop from another thread can make Unicorn run a guest instruction twice.

Unicorn 2.1 checks for a stop request after every guest memory access; on a stop it
rolls EIP back to the start of the current instruction although the instruction's
store has been made. The guest below increments a memory counter and ECX once per
loop; a watcher thread stops the core every ~0.2 ms and the main thread resumes at
the EIP it reads back. Without the correction the memory counter runs ahead of ECX
(by one per affected stop); with smpxen.pcpu.ucpatch.forbid_mid_instruction_exits
a stop is taken only at a block start and the two stay equal.

    python scripts/probes/stop_rollback.py [STOPS]

Seen on a 2-core host, Unicorn 2.1.4, 2000 stops: drift 1717 without the
correction, 0 with it."""
import sys
import threading
import time

from keystone import KS_ARCH_X86, KS_MODE_32, Ks
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn.x86_const import UC_X86_REG_ECX, UC_X86_REG_EIP

from smpxen.pcpu.ucpatch import forbid_mid_instruction_exits

CODE_VA, COUNTER_VA, EXIT_VA = 0x1000, 0x8000, 0xF000
LOOP = "loop:\n inc dword ptr [0x8000]\n inc ecx\n jmp loop\n"


def drift(stops: int, corrected: bool) -> int:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000)
    if corrected:
        forbid_mid_instruction_exits(uc._uch)
    code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(LOOP, CODE_VA)
    uc.mem_write(CODE_VA, bytes(code))
    state = {"running": False, "done": False}

    def watcher():
        while not state["done"]:
            time.sleep(0.0002)
            if state["running"]:
                uc.emu_stop()
    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    eip = CODE_VA
    for _ in range(stops):
        state["running"] = True
        uc.emu_start(eip, EXIT_VA)
        state["running"] = False
        eip = uc.reg_read(UC_X86_REG_EIP)
    state["done"] = True
    thread.join()
    counter = int.from_bytes(uc.mem_read(COUNTER_VA, 4), "little")
    return counter - uc.reg_read(UC_X86_REG_ECX)


def main() -> int:
    stops = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    raw, fixed = drift(stops, False), drift(stops, True)
    print(f"{stops} asynchronous stops: counter drift {raw} without the correction, "
          f"{fixed} with it")
    return 0 if fixed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
