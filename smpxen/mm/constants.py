"""Constants of Xen's memory rules shared by the smpxen/mm modules (Xen keeps them
in its arch mm.h and page.h): the flags a page-table entry may not carry, the guest's
share of an L2, the hypervisor's own mapping bits, the PERDOMAIN area's layout."""
from __future__ import annotations

import struct

from smpxen.xen import arch_x86_32 as A

_u32 = struct.Struct("<I")
_table = struct.Struct("<1024I")
_desc = struct.Struct("<II")

L1_DISALLOW = A._PAGE_GLOBAL | A._PAGE_PAT
L2_DISALLOW = A._PAGE_GLOBAL | A._PAGE_PSE
DOMAIN_SLOTS = A.DOMAIN_ENTRIES_PER_L2_PAGETABLE          # 1008
XEN_RO = A._PAGE_PRESENT | A._PAGE_ACCESSED
XEN_RW = XEN_RO | A._PAGE_RW | A._PAGE_DIRTY
GDT_PAGES = 16
LDT_FIRST = 16            # perdomain_pt entries 16..31: LDT shadow
LDT_PAGES = 16
_ldt_shadow = struct.Struct(f"<{LDT_PAGES}I")
DESCS_PER_PAGE = 512
