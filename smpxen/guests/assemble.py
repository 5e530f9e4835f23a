"""Bundled guests: readable x86 assembly in smpxen/guests/asm, assembled with
keystone at load time into a KernelImage at VIRT_BASE."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from smpxen.guests.image import KernelImage, Segment

BUNDLED_VIRT_BASE = 0xC0000000
RUNTIME = "runtime"


class GuestAssemblyError(Exception):
    pass


def bundled_guest_names() -> frozenset[str]:
    files = resources.files("smpxen.guests") / "asm"
    return frozenset(p.name[:-2] for p in files.iterdir()
                     if p.name.endswith(".s") and p.name[:-2] != RUNTIME)


def guest_source(name: str) -> str:
    asm = resources.files("smpxen.guests") / "asm"
    return (asm / f"{RUNTIME}.s").read_text() + "\n" + (asm / f"{name}.s").read_text()


@lru_cache(maxsize=None)
def assemble_guest(name: str, virt_base: int = BUNDLED_VIRT_BASE) -> KernelImage:
    if name not in bundled_guest_names():
        raise GuestAssemblyError(f"unknown bundled guest {name!r} (bundled: {', '.join(sorted(bundled_guest_names()))})")
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks, KsError
    src = guest_source(name)
    if not src.isascii():
        raise GuestAssemblyError(f"bundled guest {name!r}: keystone takes ASCII source only")
    try:
        code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(src, virt_base)
    except KsError as e:
        raise GuestAssemblyError(f"bundled guest {name!r} does not assemble: {e}") from None
    data = bytes(code)
    return KernelImage(name=name, segments=[Segment(virt_base, data, len(data))],
                       entry=virt_base, virt_base=virt_base,
                       guest_params={"GUEST_OS": "smpxen-asm", "XEN_VER": "2.0", "LOADER": "generic"})


def symbol_address(name: str, symbol: str, virt_base: int = BUNDLED_VIRT_BASE) -> int:
    """Address of a label in a bundled guest: keystone exports no symbol table, so
    assemble the source with a trailing `.long symbol` and read it back."""
    from keystone import KS_ARCH_X86, KS_MODE_32, Ks
    code, _ = Ks(KS_ARCH_X86, KS_MODE_32).asm(guest_source(name) + f"\n.long {symbol}\n", virt_base)
    return int.from_bytes(bytes(code[-4:]), "little")
