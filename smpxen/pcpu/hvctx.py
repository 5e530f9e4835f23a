"""What hypercall handlers may ask of the PCPU that runs them (the `hv` every
handler in smpxen/hv/ takes). Handlers see only this narrow interface, never the
PCPU loop itself: the calling domain, its memory, the memory-management and
event-channel state, and a few services (time, scheduling, Domain-0 control).
smpxen/hv/iface.py describes it for handler authors."""
from __future__ import annotations

import struct

from unicorn import x86_const as R

from smpxen.arch.x86 import CR0_TS
from smpxen.hv.table import do_hypercall
from smpxen.pcpu import domain, domctl, lifecycle, printk, schedule
from smpxen.xen.dom0_ops import CONSOLE_RING_SIZE
from smpxen.sched.bvt import SCHED_INFO_PUT
from smpxen.xen import errno


class HvContext:
    def __init__(self, pcpu):
        self._pcpu = pcpu
        self.current = None                     # the calling domain's Vcpu (set on every switch)
        self.mem = pcpu.mem                     # guest-virtual memory of the current domain
        self.paging = pcpu.paging               # this PCPU's side of memory (pcpu/paging.py)
        self.mm = pcpu.paging.mm                # the shared frame table's rules (mm/memory.py)
        self.evtchn = pcpu.events.tables        # the shared event-channel tables
        self.domains = pcpu.domains             # the shared domain table
        self.console_io_for_all = pcpu.console_io_for_all
        # The multicall entry being run (its guest address), if any: a sub-call's
        # continuation goes into the entry's arguments instead of the registers.
        self.multicall_entry: int | None = None
        self.multicall_preempted = False
        # Domain-0's user space making the call (pcpu/privcmd.py): a continuation goes
        # into its request instead of the registers.
        self.privcmd = None

    def now(self) -> int:
        """System time (Xen's NOW()) on this PCPU."""
        return self._pcpu.clock.now()

    def console_write(self, data: bytes) -> None:
        """The current domain's console output, within its bound (pcpu/console.py)."""
        self._pcpu.console.write(self.current, data)

    def yield_current(self) -> None:
        schedule.yield_current(self._pcpu)

    def block_current(self) -> None:
        schedule.block_current(self._pcpu)

    def shutdown_current(self, reason: int) -> None:
        lifecycle.end_domain(self._pcpu, self.current, "shutdown", reason, "")

    def set_timer(self, deadline: int) -> None:
        self._pcpu.clock.set_domain_timer(self.current, deadline)

    # ---- long hypercalls (Xen's continuations) -------------------------------------
    def hypercall(self, number: int, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
        """A hypercall made for the guest by another one (multicall's entries)."""
        return do_hypercall(self, number, a1, a2, a3, a4, a5)

    def preempt_pending(self) -> bool:
        """hypercall_preempt_check(): stop a long hypercall here with a continuation."""
        return self._pcpu.preempt_pending()

    def create_continuation(self, number: int, *args: int) -> int:
        """hypercall_create_continuation(): the guest will make hypercall `number`
        again with `args` (the remaining work). Returns the value the handler
        returns (the number, which EAX must hold for the call to be made again)."""
        padded = [a & 0xFFFFFFFF for a in (list(args) + [0] * 5)[:5]]
        if self.multicall_entry is not None:
            self.mem.write(self.multicall_entry + 4, struct.pack("<5I", *padded))
            self.multicall_preempted = True
        elif self.privcmd is not None:
            self.privcmd.continuation = [number, *padded]
        else:
            self._pcpu.restart_hypercall([a & 0xFFFFFFFF for a in args])
        return number

    # ---- CPU state and events (smpxen/hv/traps.py, smpxen/hv/event_channel.py) -----
    def set_cr0_ts(self, on: bool) -> None:
        """CR0.TS of the emulated CPU (part of the running domain's context)."""
        core = self._pcpu.core
        cr0 = core.read_reg(R.UC_X86_REG_CR0)
        core.write_reg(R.UC_X86_REG_CR0, cr0 | CR0_TS if on else cr0 & ~CR0_TS)

    def write_debugreg(self, reg: int, value: int) -> None:
        self._pcpu.core.write_reg(getattr(R, f"UC_X86_REG_DR{reg}"), value)

    def evtchn_set_pending(self, domid: int, port: int) -> None:
        """Set a port pending, routed to the PCPU that hosts the domain."""
        self._pcpu.events.send(domid, port, self.current.domid)

    # ---- the domain controller (smpxen/hv/event_channel.py, smpxen/hv/console.py) ---
    def ctrl_if_notify(self) -> None:
        self._pcpu.ctrl_if.guest_notified(self.current)

    def console_input(self, count: int) -> bytes:
        return self._pcpu.ctrl_if.console_input(self.current.domid, count)

    def console_input_consume(self, count: int) -> None:
        self._pcpu.ctrl_if.console_input_consume(self.current.domid, count)

    # ---- Domain-0 control (smpxen/hv/dom0_op.py; run where the domain lives) -------
    def settime(self, secs: int, usecs: int, system_time: int) -> None:
        self._pcpu.clock.timebase.settime(secs, usecs, system_time)

    def pin_domain(self, domid: int, cpu: int) -> int:
        pcpu = self._pcpu
        if pcpu.domains.find(domid) is None:
            return -errno.ESRCH
        if domid == self.current.domid:
            return -errno.EINVAL          # as Xen: a domain does not pin itself
        if cpu < 0:
            return 0                      # unpin: domains never move by themselves anyway
        return domctl.domain_call(pcpu, domid, "migrate_request", [cpu % pcpu.nr_pcpus], wait=False)

    def pause_domain(self, domid: int, pause: bool) -> int:
        if domid == self.current.domid:
            return -errno.EINVAL
        return domctl.domain_call(self._pcpu, domid, "dom_pause", [pause])

    def adjust_domain(self, domid: int, direction: int, params):
        got = domctl.domain_call(self._pcpu, domid, "dom_adjust", [direction, params])
        return tuple(got) if isinstance(got, list) else got

    def sched_ctl(self, direction: int, ctx_allow: int) -> int:
        """DOM0_SCHEDCTL: ctx_allow is one global value in Xen; set it on every PCPU."""
        value = domctl.sched_ctl_local(self._pcpu, direction, ctx_allow)
        if direction == SCHED_INFO_PUT:
            domctl.broadcast(self._pcpu, "sched_ctl", [direction, ctx_allow])
        return value

    def trace(self, event: int, d1: int = 0, d2: int = 0, d3: int = 0, d4: int = 0, d5: int = 0) -> None:
        self._pcpu.trace.trace(event, d1, d2, d3, d4, d5)

    def tbuf_info(self) -> tuple[int, int] | None:
        h = self._pcpu.frames.header
        return (h.tbuf_maddr, h.tbuf_size) if h.tbuf_size else None

    def physinfo(self) -> dict:
        pcpu = self._pcpu
        return {"cpus": pcpu.nr_pcpus, "cpu_khz": pcpu.clock.timebase.describe()["cpu_freq_hz"] // 1000,
                "total_pages": pcpu.layout.nr_frames, "free_pages": pcpu.frames.header.free_count}

    # ---- domains made and unmade (smpxen/pcpu/domain.py), their state ---------------------
    def create_domain(self, want: int, cpu: int, memory_kb: int) -> tuple[int, int]:
        return domain.create_domain(self._pcpu, want, cpu, memory_kb)

    def destroy_domain(self, domid: int) -> int:
        return domain.destroy_domain(self._pcpu, domid)

    def build_domain(self, domid: int, ctxt: bytes) -> int:
        return domctl.domain_call(self._pcpu, domid, "dom_build", [ctxt])

    def domain_context(self, domid: int):
        return domctl.domain_call(self._pcpu, domid, "dom_getctxt")

    def alloc_domain_memory(self, domid: int, memory_kb: int) -> int:
        return domain.alloc_new_dom_mem(self._pcpu, domid, memory_kb)

    def set_vm_assist(self, domid: int, cmd: int, type_: int) -> int:
        return domctl.domain_call(self._pcpu, domid, "dom_vm_assist", [cmd, type_])

    def set_iopl(self, domid: int, iopl: int) -> int:
        return domctl.domain_call(self._pcpu, domid, "dom_iopl", [iopl])

    def msr(self, write: bool, cpu_mask: int, msr: int, lo: int, hi: int) -> tuple[int, int, int]:
        """rdmsr/wrmsr on every PCPU in cpu_mask (bit i: PCPU i); a read answers what
        the lowest of them read."""
        pcpu = self._pcpu
        cpus = [c for c in range(min(pcpu.nr_pcpus, 32)) if cpu_mask >> c & 1]
        results = [pcpu.mailbox.call(c, "msr", [write, msr, lo, hi]) for c in cpus]
        failed = next((r for r in results if r[0]), None)
        if failed is not None:
            return failed[0], 0, 0
        return (0, *results[0][1:]) if results else (0, 0, 0)

    def read_console(self, clear: bool) -> bytes:
        """The hypervisor's console ring (pcpu/printk.py), every PCPU's part."""
        pcpu = self._pcpu
        others = [c for c in range(pcpu.nr_pcpus) if c != pcpu.index]
        parts = [pcpu.printk.read(clear)] + pcpu.mailbox.call_many(others, "printk_read", (clear,))
        return printk.merge(parts, CONSOLE_RING_SIZE)
