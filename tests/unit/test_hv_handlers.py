"""The hypercall table (smpxen/hv/table.py) and handlers run against a fake
hypervisor interface (smpxen/hv/iface.py)."""
from smpxen.hv.guestmem import GuestMemory
from smpxen.hv.table import do_hypercall, implemented
from smpxen.xen import errno
from smpxen.xen.hypercall import Hypercall
from smpxen.xen.structs import SharedInfo
from smpxen.xen.xen import CONSOLEIO_write


class FakeHv:
    """The parts of the hypervisor interface (smpxen/hv/iface.py) these handlers use."""
    def __init__(self, mem, privileged=True, for_all=True):
        self.mem = mem
        self.console_io_for_all = for_all
        self.written = []
        self.events = []

        class V:
            pass
        self.current = V()
        self.current.domid = 1
        self.current.privileged = privileged
        self.current.info = type("I", (), {"vm_assist": 0})()
        self.current.shared = SharedInfo()

    def console_write(self, data):
        self.written.append(data)

    def yield_current(self):
        self.events.append("yield")

    def block_current(self):
        self.events.append("block")

    def shutdown_current(self, reason):
        self.events.append(("shutdown", reason))


def test_dispatch_console_clips_and_faults(build_domain):
    ram, layout, ft, info = build_domain()
    mem = GuestMemory(ram, layout.nr_frames)
    mem.cr3 = info.pt_base_mfn << 12
    hv = FakeHv(mem)
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_write, 0xFFFFFFFF, 0xC0000000, 0, 0) == 4095
    assert len(hv.written[0]) == 4095
    assert do_hypercall(hv, Hypercall.console_io, CONSOLEIO_write, 8, 0x1000, 0, 0) == -errno.EFAULT
    hv_strict = FakeHv(mem, privileged=False, for_all=False)
    assert do_hypercall(hv_strict, Hypercall.console_io, CONSOLEIO_write, 1, 0xC0000000, 0, 0) == -errno.EPERM
    assert do_hypercall(hv, 30, 0, 0, 0, 0, 0) == -errno.ENOSYS


def test_sched_op_block_clears_upcall_mask(machine_ram):
    hv = FakeHv(None)
    hv.current.shared.vcpu_data[0].evtchn_upcall_mask = 1
    assert do_hypercall(hv, Hypercall.sched_op, 1, 0, 0, 0, 0) == 0
    assert hv.current.shared.vcpu_data[0].evtchn_upcall_mask == 0
    assert hv.events == ["block"]
    assert do_hypercall(hv, Hypercall.sched_op, 2 | (2 << 8), 0, 0, 0, 0) == 0
    assert hv.events[-1] == ("shutdown", 2)


def test_implemented_hypercalls_listed():
    assert {Hypercall.console_io, Hypercall.xen_version, Hypercall.sched_op, Hypercall.multicall, Hypercall.vm_assist} <= set(implemented())


def test_readme_hypercall_table_matches_the_hypervisor():
    """The README lists every hypercall; exactly the unimplemented ones say -ENOSYS."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {int(m[1]): (m[2], m[3]) for m in re.finditer(r"^\| (\d+) \| (\w+) \| (.*) \|$", readme, re.M)}
    done = set(implemented())
    for number in Hypercall:
        name = number.name
        assert rows[number][0] == name
        assert rows[number][1].startswith("**-ENOSYS**") == (number not in done), name
