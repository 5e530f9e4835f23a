"""Probe: lock-prefixed instructions are not atomic across Unicorn instances.

Two processes, each with its own Unicorn core over one shared-memory segment, wait
for a start flag and then add 1 to the same dword N times each, with a plain `inc`,
`lock inc`, `lock xadd`, or a `lock cmpxchg` retry loop (correct only if cmpxchg is
atomic). Updates are lost with every one of them: Unicorn runs TCG in its
single-CPU mode, where QEMU emits a locked read-modify-write as a plain load and
store. A POSIX record lock (fcntl.lockf on a byte of the segment's descriptor,
what smpxen/shm/locks.py does) around a read-modify-write from Python loses none.

    python scripts/probes/lock_atomicity.py [N]      (default 1000000 per process)

Exits 1 if two concurrent runs of a locked instruction lost nothing, even with
up to 8 x N increments (the instruction would then be atomic), or the record lock
lost an update."""
import ctypes
import fcntl
import os
import struct
import sys
import time

from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, Uc

from _bare32 import asm, shared_ram

COUNTER, GO, READY, CODE = 0x8000, 0x8004, 0x8008, 0x1000
SIZE = 1 << 16
BODIES = {
    "inc": "inc dword ptr [0x8000]",
    "lock inc": "lock inc dword ptr [0x8000]",
    "lock xadd": "mov eax, 1\n lock xadd dword ptr [0x8000], eax",
    "lock cmpxchg loop": "retry:\n mov eax, dword ptr [0x8000]\n lea edx, [eax + 1]\n"
                         " lock cmpxchg dword ptr [0x8000], edx\n jnz retry",
}


def program(body: str, n: int) -> bytes:
    return asm(f"wait:\n cmp dword ptr [{GO:#x}], 0\n je wait\n mov ecx, {n}\n"
               f"again:\n {body}\n dec ecx\n jnz again\n hlt", CODE)


def core_process(mem, code: bytes, slot: int) -> None:
    """Child: run the program on a core of its own."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map_ptr(0, SIZE, UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(mem)))
    uc.mem_write(CODE, code)
    mem[READY + slot] = 1
    uc.emu_start(CODE, CODE + len(code) - 1)


def python_process(fd: int, mem, n: int, slot: int) -> None:
    """Child: n read-modify-writes of the counter from Python, each under a record lock."""
    mem[READY + slot] = 1
    while not struct.unpack_from("<I", mem, GO)[0]:
        time.sleep(0.0001)
    for _ in range(n):
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0, os.SEEK_SET)
        struct.pack_into("<I", mem, COUNTER, struct.unpack_from("<I", mem, COUNTER)[0] + 1)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)


def race(mem, child) -> int:
    """Run child(slot) in two forked processes released together by the start flag
    once both are ready; returns the counter."""
    mem[COUNTER:READY + 2] = bytes(READY + 2 - COUNTER)     # counter, start flag, ready flags
    pids = []
    for slot in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                child(slot)
            finally:
                os._exit(0)
        pids.append(pid)
    while mem[READY:READY + 2] != b"\x01\x01":
        time.sleep(0.001)
    struct.pack_into("<I", mem, GO, 1)
    for pid in pids:
        os.waitpid(pid, 0)
    return struct.unpack_from("<I", mem, COUNTER)[0]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    fd, mem = shared_ram(SIZE)
    failures, parts = [], []
    for name, body in BODIES.items():
        # A short race can fit in one scheduler time slice on a busy host, and then
        # the two cores never overlap: try again with twice as many, up to 8 x N.
        for attempt in range(4):
            tries = n << attempt
            code = program(body, tries)
            lost = 2 * tries - race(mem, lambda slot: core_process(mem, code, slot))
            if lost:
                break
        parts.append(f"{name} {lost / (2 * tries):.1%}" + (f" (at {tries})" if tries != n else ""))
        if name != "inc" and lost == 0:
            failures.append(f"{name}: two concurrent cores lost no update, up to 2 x {tries}")
    python_n = max(2000, n // 100)
    final = race(mem, lambda slot: python_process(fd, mem, python_n, slot))
    locked_lost = 2 * python_n - final
    print(f"two Unicorn processes, {n} increments each of one shared dword; lost: " + ", ".join(parts))
    print(f"Python read-modify-write under fcntl.lockf, {python_n} each: {locked_lost} lost")
    if locked_lost:
        failures.append("the record lock did not serialise the two processes")
    for f in failures:
        print("FACT NO LONGER HOLDS:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
