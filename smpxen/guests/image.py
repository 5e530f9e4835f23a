"""A loadable guest kernel, independent of where it came from (assembled bundled
guest or ELF32 file). The domain builder consumes only this."""
from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SIZE = 4096


@dataclass(frozen=True)
class Segment:
    vaddr: int          # guest virtual address of the first byte
    data: bytes         # initialised bytes (filesz)
    memsz: int          # bytes occupied in memory; the tail past len(data) is zeroed


@dataclass
class KernelImage:
    name: str                      # bundled guest name or file path, for messages
    segments: list[Segment]
    entry: int                     # virtual entry point
    virt_base: int                 # VIRT_BASE: where the image's virtual region starts
    guest_params: dict[str, str] = field(default_factory=dict)  # parsed __xen_guest string

    @property
    def vstart(self) -> int:
        return min(s.vaddr for s in self.segments)

    @property
    def vend(self) -> int:
        return max(s.vaddr + s.memsz for s in self.segments)

    @property
    def writable_pagetables(self) -> bool:
        """PT_MODE_WRITABLE in __xen_guest asks the builder to enable the vm_assist."""
        return "PT_MODE_WRITABLE" in self.guest_params
