"""xen/include/public/arch-x86_32.h and the x86_32 layout Xen imposes on guests."""

HYPERVISOR_VIRT_START = 0xFC000000   # top 64 MiB belong to the hypervisor
MACH2PHYS_VIRT_START = 0xFC000000    # read-only machine->phys table (first 4 MiB)
MACH2PHYS_VIRT_END = 0xFC400000
PAGE_OFFSET = 0xFC400000             # Xen's own mappings start here

# GDT: Xen reserves entries 256..295 of every guest GDT
FIRST_RESERVED_GDT_ENTRY = 256
NR_RESERVED_GDT_ENTRIES = 40
LAST_RESERVED_GDT_ENTRY = FIRST_RESERVED_GDT_ENTRY + NR_RESERVED_GDT_ENTRIES - 1

# MMUEXT_SET_LDT (memory.c): ents <= 8192 descriptors of 8 bytes (64 KiB, 16 pages)
LDT_ENTRY_SIZE = 8
MAX_LDT_ENTRIES = 8192

FLAT_RING1_CS = 0x0819
FLAT_RING1_DS = 0x0821
FLAT_RING3_CS = 0x082B
FLAT_RING3_DS = 0x0833
FLAT_GUESTOS_CS = FLAT_RING1_CS
FLAT_GUESTOS_DS = FLAT_RING1_DS
FLAT_USER_CS = FLAT_RING3_CS
FLAT_USER_DS = FLAT_RING3_DS
HYPERVISOR_CS = 0x0808
HYPERVISOR_DS = 0x0810



def VALID_SEL(sel: int) -> bool:
    """desc.h: a guest selector must have RPL 1 (bounce frames only go to ring 1) and
    must not name one of Xen's reserved GDT entries (any LDT selector is fine)."""
    idx = sel >> 3
    return bool((idx < FIRST_RESERVED_GDT_ENTRY or idx > LAST_RESERVED_GDT_ENTRY or sel & 4)
                and sel & 3 == 1)


def VALID_CODESEL(sel: int) -> bool:
    return sel == FLAT_RING1_CS or VALID_SEL(sel)


# trap_info_t.flags
TI_DPL_MASK = 3
TI_IF_FLAG = 4

# Page-table entry bits (asm-x86/page.h)
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_PCD = 0x010
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PAT = 0x080
_PAGE_PSE = 0x080
_PAGE_GLOBAL = 0x100

L1_PAGETABLE_SHIFT = 12
L2_PAGETABLE_SHIFT = 22
ENTRIES_PER_PAGETABLE = 1024
DOMAIN_ENTRIES_PER_L2_PAGETABLE = HYPERVISOR_VIRT_START >> L2_PAGETABLE_SHIFT   # 1008
