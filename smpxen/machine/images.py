"""Resolve a domain's kernel (bundled guest name or ELF path) to a KernelImage, and
check it fits the domain, before the machine creates anything."""
from __future__ import annotations

from pathlib import Path

from smpxen.domain.builder import BuildError, check_fits
from smpxen.guests.assemble import GuestAssemblyError, assemble_guest
from smpxen.guests.elf import ElfLoadError, load_elf
from smpxen.guests.image import KernelImage


class KernelError(Exception):
    pass


def load_kernel(kernel, memory_bytes: int | None = None, privileged: bool = False) -> KernelImage:
    """The image of `kernel`; with `memory_bytes`, also refuses one whose bootstrap
    region (image, pfn->mfn list, page tables, start_info, stack; for Domain-0 also
    its privcmd window) does not fit."""
    try:
        if isinstance(kernel, Path):
            image = load_elf(kernel)
        else:
            image = assemble_guest(kernel)
        if memory_bytes is not None:
            check_fits(image, memory_bytes, privileged)
        return image
    except (GuestAssemblyError, ElfLoadError, BuildError, OSError) as e:
        raise KernelError(str(e)) from None
