"""privcmd on the PCPU hosting Domain-0: hypercalls made as Domain-0's user space
(XenLinux's privcmd device carries the hypercalls of Xen's tools the same way).

The machine process plays Domain-0's user space (smpxen/control/privcmd.py). It
sends a request [PRIVCMD, src, seq, steps] to the PCPU hosting Domain-0; each
step is one of
  ["w", va, bytes]            write into Domain-0's memory (a store of user space)
  ["r", va, length]           read from it
  ["h", nr, a1, a2, a3, a4, a5]  hypercall nr as Domain-0, stopping the request at
                                 a negative result
with every address inside Domain-0's privcmd window (smpxen/domain/builder.py:
PRIVCMD_VA, PRIVCMD_PAGES), through Domain-0's current page tables, so nothing is
reached that Domain-0 itself could not reach: hypercall arguments are Domain-0's
guest pointers and pass every check a Domain-0 hypercall passes. The reply is
[PRIVCMD_REPLY, pcpu, seq, results, error]: per step run, None, the bytes read or
the hypercall's result; error is None or one line.

A request runs as Domain-0's user space runs: on Domain-0's VCPU. Its arrival
wakes Domain-0 (as any event does); when the scheduler has Domain-0 on the CPU,
the loop runs the steps between slices, before Domain-0's own next slice. So the
core, hv.current and the page tables guest pointers go through are Domain-0's, and
the CPU time is charged to it. A long hypercall (mmu_update, dom_mem_op,
multicall, set_trap_table) that makes a continuation does not touch Domain-0's
registers: its remaining arguments replace the step's and the request goes on the
next time Domain-0 runs, after the PCPU served what was due. Hypercalls that change
the calling CPU's own state for the kernel (trap table, callbacks, stack, FPU, debug
registers, GDT, fast trap, scheduling) are not user space's to make: -EPERM. If
Domain-0 moves to another PCPU, its waiting requests follow it; if it has ended,
requests are refused."""
from __future__ import annotations

import collections

from smpxen.domain.builder import PRIVCMD_PAGES, PRIVCMD_VA
from smpxen.hv.guestmem import GuestFault
from smpxen.hv.table import do_hypercall
from smpxen.ipc import messages as M
from smpxen.pcpu import schedule
from smpxen.pcpu.containment import error_detail
from smpxen.xen import errno
from smpxen.xen.hypercall import NR_HYPERCALLS, Hypercall
from smpxen.xen.xen import SHUTDOWN_NAMES

DOM0 = 0
WINDOW_END = PRIVCMD_VA + PRIVCMD_PAGES * 4096
USER_HYPERCALLS = frozenset({
    Hypercall.mmu_update, Hypercall.dom0_op, Hypercall.dom_mem_op, Hypercall.multicall,
    Hypercall.update_va_mapping, Hypercall.event_channel_op, Hypercall.xen_version,
    Hypercall.console_io, Hypercall.vm_assist, Hypercall.update_va_mapping_otherdomain,
    Hypercall.update_descriptor,
})


class Job:
    __slots__ = ("src", "seq", "steps", "index", "results")

    def __init__(self, src: int, seq: int, steps: list):
        self.src, self.seq, self.steps = src, seq, [list(s) for s in steps]
        self.index = 0
        self.results: list = []


class Privcmd:
    def __init__(self, pcpu):
        self.pcpu = pcpu
        self.jobs: collections.deque[Job] = collections.deque()
        self.continuation: list | None = None     # set by HvContext.create_continuation

    # ---- arrival ---------------------------------------------------------------------
    def on_message(self, msg) -> None:
        """[PRIVCMD, src, seq, steps]: queue it for Domain-0's VCPU, or pass it on."""
        job = Job(msg[1], msg[2], msg[3])
        if self._elsewhere(job):
            return
        self.jobs.append(job)
        pcpu = self.pcpu
        if pcpu.sched.has_domain(DOM0):
            pcpu.sched.unblock(DOM0, pcpu.clock.now())      # user space has work: wake up

    def _elsewhere(self, job: Job) -> bool:
        """Domain-0 is not here to run `job`: forward or refuse it (True)."""
        pcpu = self.pcpu
        v = pcpu.vcpus.get(DOM0)
        info = pcpu.domains.find(DOM0)
        if v is not None:
            if v.ended:
                why = v.detail or SHUTDOWN_NAMES.get(v.info.shutdown_code, f"reason {v.info.shutdown_code}")
                self._reply(job, f"Domain-0 has {'shut down' if v.ended == 'shutdown' else v.ended} ({why}); "
                                 "there is no control plane")
                return True
            return False
        if info is None:
            self._reply(job, "this machine has no Domain-0")
        elif info.processor == pcpu.index:
            return False                  # on its way here: wait for it
        else:
            pcpu.mailbox.send_ipi(info.processor, M.PRIVCMD, job.seq, job.steps)
        return True

    # ---- running, between slices -----------------------------------------------------
    def service(self) -> bool:
        """Run waiting requests if Domain-0 is on this CPU (True if any step ran);
        pass them on if Domain-0 went elsewhere."""
        pcpu = self.pcpu
        v = pcpu.current
        if v is None or v.domid != DOM0:
            if DOM0 not in pcpu.vcpus or pcpu.vcpus[DOM0].ended:
                for job in [self.jobs.popleft() for _ in range(len(self.jobs))]:
                    if not self._elsewhere(job):
                        self.jobs.append(job)
            return False
        w = pcpu.mailbox.watcher
        w.deadline_ns = pcpu.clock.host_deadline(schedule.next_deadline(pcpu))   # for preempt checks
        while self.jobs and not v.ended:
            job = self.jobs[0]
            if not self._run(job, v):
                return True                       # preempted: serve what is due first
            self.jobs.popleft()
            self._reply(job, None)
            if pcpu.preempt_pending():
                break
        if v.ended:
            for job in self.jobs:
                self._reply(job, f"Domain-0 {v.ended} while running this request")
            self.jobs.clear()
        return True

    def _run(self, job: Job, v) -> bool:
        """Run job's steps from where it stopped; False if a hypercall made a
        continuation (the job stays first in line)."""
        mem = self.pcpu.mem
        while job.index < len(job.steps):
            step = job.steps[job.index]
            kind = step[0]
            try:
                if kind == "w":
                    _check_window(step[1], len(step[2]))
                    mem.write(step[1], bytes(step[2]))
                    job.results.append(None)
                elif kind == "r":
                    _check_window(step[1], step[2])
                    job.results.append(mem.read(step[1], step[2]))
                elif kind == "h":
                    rc = self._hypercall(v, step)
                    if rc is None:
                        return False
                    job.results.append(rc)
                    if rc < 0:
                        job.index = len(job.steps)
                        break
                else:
                    raise PrivcmdError(f"unknown step {kind!r}")
            except (GuestFault, PrivcmdError) as e:
                job.results.append(str(e))
                job.index = len(job.steps)
                break
            job.index += 1
        return True

    def _hypercall(self, v, step) -> int | None:
        """One hypercall of user space, counted as Domain-0's; None if it made a
        continuation (step now holds the arguments left). An error in hypervisor
        code crashes Domain-0, as in the hook."""
        pcpu = self.pcpu
        nr = step[1] & (NR_HYPERCALLS - 1)
        if nr not in USER_HYPERCALLS:
            return -errno.EPERM
        pcpu.counts["hypercalls"] += 1
        v.hypercalls += 1
        v.hypercalls_by_nr[nr] += 1
        self.continuation = None
        pcpu.hv.privcmd = self
        try:
            rc = do_hypercall(pcpu.hv, nr, *step[2:7])
        except Exception as e:
            v.hypercall_results["hypervisor_error"] += 1
            from smpxen.pcpu import lifecycle
            lifecycle.end_domain(pcpu, v, "crashed", -1,
                                 error_detail(f"privcmd hypercall {nr}", e))
            raise PrivcmdError("the hypercall crashed Domain-0") from None
        finally:
            pcpu.hv.privcmd = None
        if self.continuation is not None:
            v.hypercall_results["continuation"] += 1
            step[1:7] = self.continuation
            return None
        v.hypercall_results[rc if rc <= 0 else 1] += 1
        return rc

    def _reply(self, job: Job, error: str | None) -> None:
        if error is None and job.results and isinstance(job.results[-1], str):
            error = job.results[-1]
        self.pcpu.mailbox.send_machine(M.PRIVCMD_REPLY, self.pcpu.index, job.seq, job.results, error)


class PrivcmdError(Exception):
    pass


def _check_window(va: int, length: int) -> None:
    if length < 0 or not PRIVCMD_VA <= va <= va + length <= WINDOW_END:
        raise PrivcmdError(f"{va:#x}+{length} is outside Domain-0's privcmd window "
                           f"{PRIVCMD_VA:#x}..{WINDOW_END:#x}")


__all__ = ["Privcmd", "USER_HYPERCALLS"]
