"""The hypervisor interface a hypercall handler gets: everything a handler in
smpxen/hv/ may touch, and nothing else. The PCPU implements it
(smpxen/pcpu/hvctx.py); unit tests implement pieces of it with fakes.

A handler runs inside the hook of the PCPU that runs the calling domain, with that
domain stopped at its `int $0x82`. It reads and writes the caller's memory through
`mem` (a bad pointer raises GuestFault, which the table turns into -EFAULT), keeps
the memory rules through `mm` and `paging`, and asks for everything that touches
scheduling, time, other PCPUs or other domains through the methods below."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:                      # annotations only: hv/ never imports pcpu/ code
    from smpxen.hv.event_channel import EvtchnTables
    from smpxen.hv.guestmem import GuestMemory
    from smpxen.mm.memory import MM
    from smpxen.pcpu.paging import Paging
    from smpxen.pcpu.vcpu import Vcpu
    from smpxen.shm.domains import DomainTable


class Hypervisor(Protocol):
    # ---- state -------------------------------------------------------------------
    current: Vcpu               # the calling domain (domid, privileged, info, thread, shared)
    mem: GuestMemory            # its guest-virtual memory (page-table walks from its CR3)
    mm: MM                      # the frame table's rules: references, types, validation (mm/)
    paging: Paging              # this PCPU's side: foreign domain, deferred flushes, TLBs, LDT
    evtchn: EvtchnTables        # the event-channel tables (shared by all PCPUs)
    domains: DomainTable        # the domain table: find(domid), first_from(domid)
    console_io_for_all: bool    # may unprivileged domains write the console
    multicall_entry: int | None  # the multicall entry being run (its guest address)
    multicall_preempted: bool   # a sub-call of that entry made a continuation
    privcmd: object | None      # Domain-0's user space is the caller (smpxen/pcpu/privcmd.py)

    # ---- time, console, scheduling of the caller ------------------------------------
    def now(self) -> int:
        """System time in ns (Xen's NOW()) on this PCPU."""

    def console_write(self, data: bytes) -> None:
        """Console output of the caller, within its bound."""

    def yield_current(self) -> None:
        """SCHEDOP_yield: the caller gives up the rest of its slice."""

    def block_current(self) -> None:
        """SCHEDOP_block: the caller sleeps until an event arrives."""

    def shutdown_current(self, reason: int) -> None:
        """SCHEDOP_shutdown: the caller ends with `reason` (SHUTDOWN_*)."""

    def set_timer(self, deadline: int) -> None:
        """set_timer_op: one-shot VIRQ_TIMER at system time `deadline` (0 cancels)."""

    # ---- long hypercalls ------------------------------------------------------------
    def hypercall(self, number: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        """Make another hypercall for the caller (multicall's entries)."""

    def preempt_pending(self) -> bool:
        """hypercall_preempt_check(): other work is due; stop with a continuation."""

    def create_continuation(self, number: int, *args: int) -> int:
        """The caller will make hypercall `number` again with `args`; returns the
        value the handler must return."""

    # ---- CPU state and events ---------------------------------------------------------
    def set_cr0_ts(self, on: bool) -> None:
        """CR0.TS of the caller's CPU (fpu_taskswitch, the lazy-FPU trap)."""

    def write_debugreg(self, reg: int, value: int) -> None:
        """Load debug register `reg` of the caller's CPU (set_debugreg)."""

    def evtchn_set_pending(self, domid: int, port: int) -> None:
        """Set a port pending for any domain, on whichever PCPU hosts it."""

    # ---- the domain controller (smpxen/pcpu/ctrl_if.py) ---------------------------------
    def ctrl_if_notify(self) -> None:
        """The caller notified its domain_controller_evtchn: serve its control rings."""

    def console_input(self, count: int) -> bytes:
        """Up to `count` bytes of the caller's console input (Domain-0), left queued."""

    def console_input_consume(self, count: int) -> None:
        """Drop the first `count` bytes of the caller's console input."""

    # ---- Domain-0 control (each runs on the PCPU hosting the domain) --------------------
    def settime(self, secs: int, usecs: int, system_time: int) -> None: ...

    def pin_domain(self, domid: int, cpu: int) -> int: ...

    def pause_domain(self, domid: int, pause: bool) -> int: ...

    def adjust_domain(self, domid: int, direction: int, params): ...

    def sched_ctl(self, direction: int, ctx_allow: int) -> int: ...

    def physinfo(self) -> dict: ...

    # ---- trace buffers (smpxen/pcpu/trace.py) --------------------------------------------
    def trace(self, event: int, d1: int = 0, d2: int = 0, d3: int = 0, d4: int = 0, d5: int = 0) -> None:
        """Xen's TRACE_5D: record `event` in this PCPU's buffer if the mask allows."""

    def tbuf_info(self) -> tuple[int, int] | None:
        """DOM0_GETTBUFS: (machine address of buffer 0, bytes per buffer), or None."""

    # ---- domains made and unmade (Domain-0 only; smpxen/pcpu/domain.py) -------------------
    def create_domain(self, want: int, cpu: int, memory_kb: int) -> tuple[int, int]:
        """DOM0_CREATEDOMAIN: (0, domid) or (-errno, 0)."""

    def destroy_domain(self, domid: int) -> int:
        """DOM0_DESTROYDOMAIN: everything of the domain goes, on the PCPU hosting it."""

    def build_domain(self, domid: int, ctxt: bytes) -> int:
        """DOM0_BUILDDOMAIN with a full_execution_context_t."""

    def domain_context(self, domid: int):
        """The domain's full_execution_context_t (bytes), or -errno."""

    def alloc_domain_memory(self, domid: int, memory_kb: int) -> int:
        """DOM0_SETDOMAININITIALMEM: grow a domain not yet built to memory_kb."""

    def set_vm_assist(self, domid: int, cmd: int, type_: int) -> int: ...

    def set_iopl(self, domid: int, iopl: int) -> int: ...

    def msr(self, write: bool, cpu_mask: int, msr: int, lo: int, hi: int) -> tuple[int, int, int]:
        """DOM0_MSR on the PCPUs in cpu_mask: (rc, lo, hi)."""

    def read_console(self, clear: bool) -> bytes:
        """The hypervisor's console ring (DOM0_READCONSOLE); emptied if `clear`."""
