"""console_io (xen/drivers/char/console.c): on Xen 2.0 only Domain-0 may use it
unless Xen is a debug build; smpxen opens it to every domain by default
(machine.console_io = "all") and keeps Xen's rule with console_io = "dom0", where a
domU's console goes over its control interface (smpxen/pcpu/ctrl_if.py).
CONSOLEIO_read returns Domain-0's console input."""
from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.xen import CONSOLEIO_MAX_WRITE, CONSOLEIO_read, CONSOLEIO_write


def do_console_io(hv: Hypervisor, cmd, count, buf, _a4, _a5):
    vcpu = hv.current
    if not vcpu.privileged and not hv.console_io_for_all:
        return -errno.EPERM
    if cmd == CONSOLEIO_write:
        count = min(count, CONSOLEIO_MAX_WRITE)
        hv.console_write(hv.mem.read(buf, count))
        return count
    if cmd == CONSOLEIO_read:
        # Domain-0's serial input (smpxen/pcpu/ctrl_if.py); Xen's ring serves only
        # Domain-0, whatever the console_io rule. A buffer that faults gets -EFAULT
        # and consumes nothing (Xen keeps the bytes it had copied before the fault).
        if vcpu.domid != 0 or count <= 0:
            return 0
        data = hv.console_input(count)
        if data:
            hv.mem.write(buf, data)
            hv.console_input_consume(len(data))
        return len(data)
    return -errno.EINVAL
