"""Resolve a domain's kernel (bundled guest name or ELF path) to a KernelImage."""
from __future__ import annotations

from pathlib import Path

from smpxen.guests.assemble import GuestAssemblyError, assemble_guest
from smpxen.guests.elf import ElfLoadError, load_elf
from smpxen.guests.image import KernelImage


class KernelError(Exception):
    pass


def load_kernel(kernel) -> KernelImage:
    try:
        if isinstance(kernel, Path):
            return load_elf(kernel)
        return assemble_guest(kernel)
    except (GuestAssemblyError, ElfLoadError, OSError) as e:
        raise KernelError(str(e)) from None
