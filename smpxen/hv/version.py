from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.xen import XEN_SUBVERSION, XEN_VERSION


def do_xen_version(hv: Hypervisor, cmd, *_):
    if cmd != 0:
        return -errno.ENOSYS
    return (XEN_VERSION << 16) | XEN_SUBVERSION
