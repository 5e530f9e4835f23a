"""Fixtures of the unit tests: a small machine RAM in this process, formatted as
the machine formats it, and domains built into it by the real builder."""
import pytest

from smpxen.domain.builder import DomainBuilder, DomainRequest
from smpxen.guests.assemble import assemble_guest
from smpxen.shm.boot import format_hypervisor_region
from smpxen.shm.domains import DomainTable
from smpxen.shm.frametable import FrameTable
from smpxen.shm.layout import Layout
from smpxen.shm.locks import Locks
from smpxen.shm.ram import MachineRAM
from support.mm import Machine


@pytest.fixture
def machine_ram():
    """(ram, layout, frame table) of a 16 MiB, 2-PCPU machine."""
    ram = MachineRAM.create(16 << 20)
    ram.unlink()
    layout = Layout.compute(16 << 20, 2)
    ft = FrameTable(ram, layout, Locks(ram.fd))
    format_hypervisor_region(ram, layout, ft)
    yield ram, layout, ft
    del ft
    ram.close()


@pytest.fixture
def build_domain(machine_ram):
    """build_domain(guest, mem, domid) -> (ram, layout, frame table, DomainInfo)."""
    def build(name="hello", mem=4 << 20, domid=1):
        ram, layout, ft = machine_ram
        b = DomainBuilder(ram, layout, ft, DomainTable(ram, layout))
        info = b.build(DomainRequest(domid, f"d{domid}", assemble_guest(name), mem, 0, "cmd {x}", False))
        return ram, layout, ft, info
    return build


@pytest.fixture(scope="module")
def machine():
    """The memory tests' machine (tests/support/mm.py), one per module."""
    m = Machine()
    yield m
    del m.ft, m.dt
    m.ram.close()


@pytest.fixture
def m(machine):
    """That machine with a fresh hypervisor region and its two domains."""
    return machine.fresh()
