"""A domain's virtual CPU as its PCPU process sees it (Xen 2.0 domains have one)."""
from __future__ import annotations

from dataclasses import dataclass, field

from smpxen.shm.domains import DomainInfo
from smpxen.xen.structs import SharedInfo


@dataclass
class Vcpu:
    domid: int
    info: DomainInfo            # the shared domain-table record
    shared: SharedInfo          # the domain's shared_info page
    context: object = None      # saved Unicorn context; None until first entry
    hypercalls: int = 0
    slices: int = 0
    ended: str | None = None    # "shutdown" / "crashed" once it ended
    detail: str = ""
    pcpus_ran: set = field(default_factory=set)
    ldt_base: int = 0           # MMUEXT_SET_LDT (linear address, entries)
    ldt_ents: int = 0

    @property
    def privileged(self) -> bool:
        return bool(self.info.privileged)

    @property
    def name(self) -> str:
        return self.info.name.decode(errors="replace")
