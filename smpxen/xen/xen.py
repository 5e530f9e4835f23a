"""Constants of xen/include/public/xen.h (Xen 2.0.0) other than hypercall numbers."""

# Xen version returned by xen_version(0): (XEN_VERSION << 16) | XEN_SUBVERSION
XEN_VERSION = 2
XEN_SUBVERSION = 0

# console_io
CONSOLEIO_write = 0
CONSOLEIO_read = 1
CONSOLEIO_MAX_WRITE = 4095      # count is clipped to this

# sched_op: command in bits 0..7, shutdown reason in bits 8..15
SCHEDOP_yield = 0
SCHEDOP_block = 1
SCHEDOP_shutdown = 2
SCHEDOP_cmdmask = 255
SCHEDOP_reasonshift = 8
# shutdown reasons (io/domain_controller.h; opaque to Xen)
SHUTDOWN_poweroff = 0
SHUTDOWN_reboot = 1
SHUTDOWN_suspend = 2
SHUTDOWN_NAMES = {SHUTDOWN_poweroff: "poweroff", SHUTDOWN_reboot: "reboot", SHUTDOWN_suspend: "suspend"}

# vm_assist
VMASST_CMD_enable = 0
VMASST_CMD_disable = 1
VMASST_TYPE_4gb_segments = 0
VMASST_TYPE_4gb_segments_notify = 1
VMASST_TYPE_writable_pagetables = 2
MAX_VMASST_TYPE = 2

# mmu_update request encoding (ptr & 3)
MMU_NORMAL_PT_UPDATE = 0
MMU_MACHPHYS_UPDATE = 2
MMU_EXTENDED_COMMAND = 3
MMUEXT_PIN_L1_TABLE = 0
MMUEXT_PIN_L2_TABLE = 1
MMUEXT_PIN_L3_TABLE = 2
MMUEXT_PIN_L4_TABLE = 3
MMUEXT_UNPIN_TABLE = 4
MMUEXT_NEW_BASEPTR = 5
MMUEXT_TLB_FLUSH = 6
MMUEXT_INVLPG = 7
MMUEXT_FLUSH_CACHE = 8
MMUEXT_SET_LDT = 9
MMUEXT_SET_FOREIGNDOM = 10
MMUEXT_CLEAR_FOREIGNDOM = 11
MMUEXT_TRANSFER_PAGE = 12
MMUEXT_REASSIGN_PAGE = 13
MMUEXT_CMD_MASK = 255
MMUEXT_CMD_SHIFT = 8
# mmu_update's continuation (Xen 2.0.x memory.c): the top bit of count marks a call
# resuming a preempted one; *success_count already holds what was done.
MMU_UPDATE_PREEMPTED = 0x80000000

# update_va_mapping flags
UVMF_FLUSH_TLB = 1
UVMF_INVLPG = 2

# dom_mem_op
MEMOP_increase_reservation = 0
MEMOP_decrease_reservation = 1
# dom_mem_op's continuation (Xen 2.0.x dom_mem_ops.c): op's bits from 4 up hold the
# extent to start from.
START_EXTENT_SHIFT = 4

# Domain ids
DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
IDLE_DOMAIN_ID = 0x7FFF

# Virtual interrupts
VIRQ_MISDIRECT = 0
VIRQ_TIMER = 1
VIRQ_DEBUG = 2
VIRQ_CONSOLE = 3
VIRQ_DOM_EXC = 4
VIRQ_PARITY_ERR = 5
VIRQ_IO_ERR = 6
NR_VIRQS = 7

NR_EVENT_CHANNELS = 1024
NR_PIRQS = 128                 # physical IRQs (asm-x86/irq.h); smpxen has none to bind

# event_channel_op commands (public/event_channel.h)
EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
# EVTCHNOP_status results
EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
BIND_PIRQ__WILL_SHARE = 1
MAX_VIRT_CPUS = 1

# start_info flags
SIF_PRIVILEGED = 1 << 0
SIF_INITDOMAIN = 1 << 1
SIF_BLK_BE_DOMAIN = 1 << 4
SIF_NET_BE_DOMAIN = 1 << 5
MAX_CMDLINE = 256

# multicall
ARGS_PER_MULTICALL_ENTRY = 8
MULTICALL_ENTRY_ORDER = 5      # 32-byte entries
