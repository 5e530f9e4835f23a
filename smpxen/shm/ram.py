"""Machine RAM: one POSIX shared-memory segment that every PCPU process maps into its
own Unicorn core (mem_map_ptr, no copies).

The machine process creates the segment, hands the open descriptor to the PCPU
processes it spawns (pass_fds) and unlinks the name as soon as they are spawned, so
no /dev/shm entry outlives the machine however it ends; the memory itself lives
until the last process that maps it exits."""
from __future__ import annotations

import ctypes
import mmap
import os
import secrets

SHM_DIR = "/dev/shm"
SHM_PREFIX = "smpxen-"


class OutOfSharedMemory(Exception):
    """/dev/shm cannot hold the machine's RAM. tmpfs allocates on first touch, so
    without this check the machine would start and then die of SIGBUS."""


class MachineRAM:
    """A mapping of machine RAM. Frame n is bytes [n*4096, (n+1)*4096)."""

    def __init__(self, fd: int, size: int, name: str | None = None):
        self.fd = fd
        self.size = size
        self.name = name
        self.mem = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mem)
        self._anchor = ctypes.c_char.from_buffer(self.mem)
        self.address = ctypes.addressof(self._anchor)   # host address, for mem_map_ptr

    @classmethod
    def create(cls, size: int) -> "MachineRAM":
        """Create a fresh zero-filled segment named smpxen-<pid>-<random>."""
        st = os.statvfs(SHM_DIR)
        free = st.f_bavail * st.f_frsize
        if free < size:
            raise OutOfSharedMemory(f"{SHM_DIR} has {free >> 20} MiB free, the machine's RAM needs "
                                    f"{size >> 20} MiB (lower machine.memory_mib or enlarge {SHM_DIR})")
        name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            return cls(fd, size, name)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise

    @classmethod
    def attach(cls, fd: int, size: int) -> "MachineRAM":
        """Map an inherited descriptor (in a PCPU process)."""
        return cls(fd, size)

    def unlink(self) -> None:
        """Remove the name; the mapping stays valid. Idempotent."""
        if self.name is not None:
            try:
                os.unlink(os.path.join(SHM_DIR, self.name))
            except FileNotFoundError:
                pass
            self.name = None

    def close(self) -> None:
        self.unlink()
        self.view.release()
        del self._anchor
        try:
            self.mem.close()
        except BufferError:
            pass   # a ctypes view (frame table) still references it; process exit frees it
        try:
            os.close(self.fd)
        except OSError:
            pass

    # Small helpers used by the builder and the hypervisor (physical addresses).
    def read(self, paddr: int, n: int) -> bytes:
        return self.mem[paddr:paddr + n]

    def write(self, paddr: int, data: bytes) -> None:
        self.mem[paddr:paddr + len(data)] = data

    def zero_frame(self, mfn: int) -> None:
        self.mem[mfn << 12:(mfn + 1) << 12] = bytes(4096)
