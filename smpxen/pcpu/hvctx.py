"""What hypercall handlers may ask of the PCPU that runs them. Handlers see only
this narrow interface, never the PCPU loop itself."""
from __future__ import annotations


class HvContext:
    def __init__(self, pcpu):
        self._pcpu = pcpu
        self.console_io_for_all = pcpu.console_io_for_all

    @property
    def current(self):
        return self._pcpu.current

    @property
    def mem(self):
        return self._pcpu.mem

    @property
    def mmu(self):
        """This PCPU's memory-management state and services (smpxen.pcpu.mmu.PcpuMM)."""
        return self._pcpu.mmu

    def now(self) -> int:
        return self._pcpu.now()

    def console_write(self, domid: int, data: bytes) -> None:
        self._pcpu.send_console(domid, data)

    def yield_current(self) -> None:
        self._pcpu.yield_current()

    def block_current(self) -> None:
        self._pcpu.block_current()

    def set_timer(self, deadline: int) -> None:
        self._pcpu.set_domain_timer(self._pcpu.current, deadline)

    def shutdown_current(self, reason: int) -> None:
        self._pcpu.end_domain(self._pcpu.current, "shutdown", reason, "")
