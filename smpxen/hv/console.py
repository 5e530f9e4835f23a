"""console_io: on Xen 2.0 only Domain-0 may use it unless Xen is a debug build;
smpxen opens it to every domain by default (machine.console_io = "all")."""
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
        # No serial input is modelled yet: nothing to read.
        return 0
    return -errno.EINVAL
