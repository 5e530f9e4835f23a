"""Xen's errno values (xen/include/xen/errno.h); hypercalls return them negated."""
EPERM = 1
ESRCH = 3
E2BIG = 7
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EINVAL = 22
ENOSPC = 28
ENOSYS = 38
ENODATA = 61

NAMES = {v: k for k, v in dict(globals()).items() if k.isupper()}


def errname(value: int) -> str:
    """'-EFAULT' for -14; the decimal number for anything else."""
    if value < 0 and -value in NAMES:
        return "-" + NAMES[-value]
    return str(value)
