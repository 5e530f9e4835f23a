"""The control endpoint's `tbufs` verb (smpxen/control/endpoint.py): what `smpxen
xentrace` needs to read a running machine's trace buffers, as Xen's xentrace gets
it in Domain-0 - DOM0_GETTBUFS's answer (the machine address of PCPU 0's buffer and
each buffer's size), made as Domain-0 through privcmd (smpxen/control/xc.py) - and
where machine RAM can be opened from the host (/proc/<machine pid>/fd/<n>: the
segment's /dev/shm name is gone, smpxen/shm/ram.py). A machine without Domain-0, or
whose Domain-0 has ended, answers from the hypervisor's header, which holds the same
answer (smpxen/trace/area.py); "via" says which."""
from __future__ import annotations

import ctypes
import json
import os

from smpxen.control.endpoint import Session, XmError, verb
from smpxen.shm.frametable import MachineHeader
from smpxen.trace.area import NO_BUFFERS
from smpxen.xen import dom0_ops as D, errno


def _gettbufs(s: Session) -> tuple[int, int, str]:
    from smpxen.control.privcmd import PrivcmdFailed
    from smpxen.control.xc import Xc, XcError
    if s.machine.has_dom0():
        try:
            got = Xc(s.privcmd, s.machine.privcmd_l1()).op(D.DOM0_GETTBUFS, D.GetTbufs(), "gettbufs")[0]
            return got.mach_addr, got.size, "DOM0_GETTBUFS"
        except XcError as e:
            if e.rc == -errno.ENODATA:
                raise XmError(NO_BUFFERS) from None
            raise
        except PrivcmdFailed as e:
            via = f"the hypervisor's header (Domain-0 cannot ask: {e})"
    else:
        via = "the hypervisor's header (no Domain-0)"
    ram = s.machine.ram()
    h = MachineHeader.from_buffer_copy(ram.mem[:ctypes.sizeof(MachineHeader)])
    if not h.tbuf_size:
        raise XmError(NO_BUFFERS)
    return h.tbuf_maddr, h.tbuf_size, via


@verb("tbufs", "tbufs", "where the trace buffers are (DOM0_GETTBUFS) and machine RAM, for smpxen xentrace",
      needs_dom0=False)
def xm_tbufs(s: Session) -> str:
    if s.args:
        raise XmError(f"tbufs: expected no arguments, got {len(s.args)}")
    mach_addr, size, via = _gettbufs(s)
    ram = s.machine.ram()
    return json.dumps({"mach_addr": mach_addr, "size": size, "nr_pcpus": s.machine.cpus, "via": via,
                       "pid": os.getpid(), "ram": f"/proc/{os.getpid()}/fd/{ram.fd}",
                       "ram_bytes": ram.size}) + "\n"
