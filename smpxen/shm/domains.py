"""The domain table: the hypervisor's shared record of every domain, in the
hypervisor region so any PCPU (and the machine process) can read it. A domain's
record is written by the machine while the domain is built or destroyed and by the
PCPU that runs it otherwise."""
from __future__ import annotations

import ctypes

u8, u16, u32, s32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64

# DomainInfo.state
DS_FREE = 0
DS_BUILDING = 1
DS_RUNNING = 2        # constructed; scheduled by its PCPU
DS_SHUTDOWN = 3
DS_CRASHED = 4
DS_DYING = 5


class CtrlIfState(ctypes.LittleEndianStructure):
    """The domain controller's end of the domain's control interface
    (smpxen/domain/ctrl_ring.py): its event channel, its private ring indices, and
    the number of the next message from the controller to hand the domain
    (smpxen/pcpu/ctrl_if.py delivers them in that order, wherever they arrive)."""
    _pack_ = 1
    _fields_ = [
        ("port", u16),                # the domain's domain_controller_evtchn (0: none)
        ("remote_port", u16),         # the controller's end, a port of Domain-0
        ("tx_req_cons", u32), ("tx_resp_prod", u32),
        ("rx_req_prod", u32), ("rx_resp_cons", u32),
        ("in_seq", u32),
    ]


class DomainInfo(ctypes.LittleEndianStructure):
    _pack_ = 1
    _fields_ = [
        ("state", u8),
        ("privileged", u8),
        ("shutdown_code", u8),
        ("_pad0", u8),
        ("domid", u16),
        ("_pad1", u16),
        ("flags", u32),               # Xen DF_* bits (smpxen.sched.flags)
        ("processor", s32),           # PCPU the domain is assigned to
        ("tot_pages", u32),
        ("max_pages", u32),
        ("shared_info_mfn", u32),
        ("pt_base_mfn", u32),         # initial page directory
        ("entry_eip", u32),
        ("entry_esp", u32),
        ("start_info_va", u32),
        ("vm_assist", u32),
        ("cpu_time_ns", u64),
        ("name", ctypes.c_char * 32),
        ("perdomain_pt_mfn", u32),    # hypervisor L1 of the PERDOMAIN slot (GDT/LDT shadow)
        ("virq_to_evtchn", u16 * 8),  # Xen's per-domain VIRQ -> port map (0 = VIRQ_MISDIRECT port)
        ("ctrl", CtrlIfState),        # its control interface (smpxen/domain/ctrl_channel.py)
        ("console_seq", u32),         # number of its next console message (smpxen/pcpu/console.py)
        # PCPUs it has run on (bit = index % 32, as a frame's cpu_mask): any may hold
        # translated code of its frames, which a switch of CR3 does not drop.
        ("ran_mask", u32),
    ]


class DomainTable:
    def __init__(self, ram, layout):
        from smpxen.shm.layout import MAX_DOMAINS
        self.slots = (DomainInfo * MAX_DOMAINS).from_buffer(ram.mem, layout.domtable_mfn << 12)
        self.max = MAX_DOMAINS
        self._slot_hint: dict[int, int] = {}      # domid -> slot it was last found in

    def find(self, domid: int) -> DomainInfo | None:
        """The record of the live domain `domid`, or None. Looked up on every
        hypercall that names a domain, so the slot found last time is tried first
        (checked: any process may free and reuse a slot meanwhile)."""
        i = self.slot_of(domid)
        return None if i is None else self.slots[i]

    def slot_of(self, domid: int) -> int | None:
        slots = self.slots
        i = self._slot_hint.get(domid)
        if i is not None and slots[i].state != DS_FREE and slots[i].domid == domid:
            return i
        for i, d in enumerate(slots):
            if d.state != DS_FREE and d.domid == domid:
                self._slot_hint[domid] = i
                return i
        return None

    def first_from(self, domid: int) -> DomainInfo | None:
        """The live domain with the lowest id >= domid (DOM0_GETDOMAININFO's walk)."""
        return min((d for d in self.slots if d.state != DS_FREE and d.domid >= domid),
                   key=lambda d: d.domid, default=None)

    def allocate(self, domid: int) -> DomainInfo:
        for d in self.slots:
            if d.state == DS_FREE:
                ctypes.memset(ctypes.addressof(d), 0, ctypes.sizeof(d))
                d.domid = domid
                d.state = DS_BUILDING
                return d
        raise RuntimeError(f"domain table full ({self.max} domains)")

    def free(self, domid: int) -> None:
        """The slot of a destroyed domain becomes free (zeroed, as before first use);
        its id can be handed out again."""
        i = self.slot_of(domid)
        if i is not None:
            d = self.slots[i]
            ctypes.memset(ctypes.addressof(d), 0, ctypes.sizeof(d))

    def live(self):
        return [d for d in self.slots if d.state != DS_FREE]
