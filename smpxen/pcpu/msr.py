"""The model-specific registers each PCPU has, for DOM0_MSR (Xen 2.0
arch/x86/dom0_ops.c: rdmsr/wrmsr on every CPU in a mask).

Guests run in rings 1 and 3, where rdmsr and wrmsr fault, so only Domain-0 through
DOM0_MSR sees these. The time-stamp counter is the PCPU's cycle counter (what
guests' rdtsc reads); the hypervisor's time rests on it, so writing it is refused
(-EPERM). The others are this PCPU's registers of the emulated CPU, with the
emulated CPU's reset values; a write is kept for later reads on that PCPU and
changes nothing else (no guest can use them). Any other MSR: Xen 2.0 would take a
#GP in the hypervisor; smpxen answers -EINVAL."""
from __future__ import annotations

from unicorn import x86_const as R

from smpxen.xen import errno

IA32_TIME_STAMP_COUNTER = 0x10
IA32_APIC_BASE = 0x1B
APIC_BASE_DEFAULT = 0xFEE00000
APIC_ENABLE = 1 << 11
APIC_BSP = 1 << 8
# Registers of the emulated CPU that keep a value (the emulated core gives their reset values).
KEPT = {0x174: "IA32_SYSENTER_CS", 0x175: "IA32_SYSENTER_ESP", 0x176: "IA32_SYSENTER_EIP",
        0x1A0: "IA32_MISC_ENABLE", 0x277: "IA32_PAT", 0x8B: "IA32_BIOS_SIGN_ID"}


class MsrFile:
    def __init__(self, pcpu):
        self.pcpu = pcpu
        uc = pcpu.core.uc
        self.values = {msr: uc.reg_read(R.UC_X86_REG_MSR, msr) for msr in KEPT}
        self.values[IA32_APIC_BASE] = APIC_BASE_DEFAULT | APIC_ENABLE | (APIC_BSP if pcpu.index == 0 else 0)

    def access(self, write: bool, msr: int, value: int):
        """rdmsr/wrmsr: (0, value read or written) or (-errno, 0)."""
        if msr == IA32_TIME_STAMP_COUNTER:
            return (-errno.EPERM, 0) if write else (0, self.pcpu.clock.read_tsc())
        if msr not in self.values:
            return -errno.EINVAL, 0
        if write:
            self.values[msr] = value & 0xFFFFFFFFFFFFFFFF
        return 0, self.values[msr]


def remote_access(pcpu, write: bool, msr: int, lo: int, hi: int) -> list:
    """REMOTE_FUNCTIONS["msr"]: [rc, lo, hi] on this PCPU."""
    rc, value = pcpu.msrs.access(bool(write), msr, (hi << 32) | lo)
    return [rc, value & 0xFFFFFFFF, value >> 32]
