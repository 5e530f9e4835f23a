"""vm_assist (xen/common/domain.c): per-domain assist bits, e.g. writable page tables."""
from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.xen import MAX_VMASST_TYPE, VMASST_CMD_disable, VMASST_CMD_enable


def do_vm_assist(hv: Hypervisor, cmd, type_, *_):
    return vm_assist(hv.current.info, cmd, type_)


def vm_assist(info, cmd: int, type_: int) -> int:
    """Xen's vm_assist(d, cmd, type) on a domain-table record (also run for another
    domain by DOM0_SETDOMAINVMASSIST, on that domain's PCPU)."""
    if type_ > MAX_VMASST_TYPE:
        return -errno.EINVAL
    if cmd == VMASST_CMD_enable:
        info.vm_assist |= 1 << type_
        return 0
    if cmd == VMASST_CMD_disable:
        info.vm_assist &= ~(1 << type_)
        return 0
    return -errno.ENOSYS
