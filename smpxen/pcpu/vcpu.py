"""A domain's virtual CPU as its PCPU process sees it (Xen 2.0 domains have one)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from smpxen.pcpu.bounce import ThreadState
from smpxen.pcpu.console import ConsoleBudget
from smpxen.shm.domains import DomainInfo
from smpxen.xen.errno import errname
from smpxen.xen.hypercall import NR_HYPERCALLS, name as hypercall_name
from smpxen.xen.structs import SharedInfo


@dataclass
class Vcpu:
    domid: int
    info: DomainInfo            # the shared domain-table record
    shared: SharedInfo          # the domain's shared_info page
    context: object = None      # saved Unicorn context; None until first entry
    initial: dict | None = None  # DOM0_BUILDDOMAIN's starting state, until first entry (pcpu/vcpuctx.py)
    hypercalls: int = 0
    # Results and numbers of its hypercalls, counted in the hook (smpxen/pcpu/loop.py) with
    # int keys; named only in the report (hypercall_stats below).
    hypercall_results: collections.Counter = field(default_factory=collections.Counter)
    hypercalls_by_nr: list = field(default_factory=lambda: [0] * NR_HYPERCALLS)
    slices: int = 0
    ended: str | None = None    # "shutdown" / "crashed" once it ended
    detail: str = ""
    pcpus_ran: set = field(default_factory=set)
    # percpu time model: how far this domain's view of system time is ahead of this
    # PCPU's clock, so a domain that moved here from a faster clock never sees time
    # go backwards (the per-domain form of Xen 3.0's warp forward).
    time_offset: int = 0
    # Its set_timer_op timer's due time in host ns (0: none armed), for the report's
    # timer_wake_us (smpxen/pcpu/clock.py).
    timer_host_ns: int = 0
    # A wake-up being timed (a timer fired, a remote event): when it began, host ns
    # (0: none), and the samples its end joins when the domain next runs (loop.py).
    woken_ns: int = 0
    woken_samples: object = None
    ldt_base: int = 0           # MMUEXT_SET_LDT (linear address, entries); its pages
    ldt_ents: int = 0           # are mapped in the domain's PERDOMAIN area as they fault in
    thread: ThreadState = field(default_factory=ThreadState)   # traps, callbacks, stacks
    console: ConsoleBudget = field(default_factory=ConsoleBudget)   # its output bound here

    def woken(self, samples, now_ns: int) -> None:
        """Time a wake-up from now_ns to the domain's next slice (the first cause counts)."""
        if not self.woken_ns:
            self.woken_ns, self.woken_samples = now_ns, samples

    @property
    def privileged(self) -> bool:
        return bool(self.info.privileged)

    @property
    def name(self) -> str:
        return self.info.name.decode(errors="replace")

    def hypercall_stats(self) -> dict:
        """The counters above by name, for the report: results as "0", "-EFAULT" (any
        errno of smpxen/xen/errno.py), "positive", "continuation" (a preempted call the
        guest makes again), "hypervisor_error"; numbers by hypercall name."""
        results = {}
        for key, n in self.hypercall_results.items():
            name = key if isinstance(key, str) else "positive" if key > 0 else errname(key)
            results[name] = results.get(name, 0) + n
        return {"hypercall_results": results,
                "hypercalls_by_number": {hypercall_name(nr): n
                                         for nr, n in enumerate(self.hypercalls_by_nr) if n}}
