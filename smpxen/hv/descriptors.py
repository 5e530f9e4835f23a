"""set_gdt and update_descriptor (xen/arch/x86/x86_32/mm.c). A domain's GDT frames
are typed and validated (check_descriptor on all 512 descriptors of each), mapped
read-only in the domain's PERDOMAIN area, and the running core's GDTR points there;
Xen's 40 reserved entries are copied into the first frame."""
from __future__ import annotations

from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.arch_x86_32 import LAST_RESERVED_GDT_ENTRY

MAX_GDT_ENTRIES = 8192
DESCS_PER_PAGE = 512


def do_set_gdt(hv: Hypervisor, frame_list, entries, *_):
    if entries <= LAST_RESERVED_GDT_ENTRY or entries > MAX_GDT_ENTRIES:
        return -errno.EINVAL
    nr_pages = (entries + DESCS_PER_PAGE - 1) // DESCS_PER_PAGE
    frames = [hv.mem.read_u32(frame_list + 4 * i) for i in range(nr_pages)]
    if not hv.mm.set_gdt(hv.current.domid, frames, entries):
        return -errno.EINVAL
    hv.paging.local_flush()
    hv.paging.load_gdt(entries)
    return 0


def do_update_descriptor(hv: Hypervisor, pa, word1, word2, *_):
    if not hv.mm.update_descriptor(hv.current.domid, pa, word1, word2):
        return -errno.EINVAL
    return 0
