"""Machine RAM and its hypervisor region (smpxen/shm/): the layout, the free pool,
the /dev/shm capacity check."""
import pytest

from smpxen.shm.frametable import OWNER_NONE, OWNER_XEN
from smpxen.shm.layout import Layout


def test_layout_reserve_grows_with_ram_and_cpus():
    small = Layout.compute(16 << 20, 1)
    big = Layout.compute(256 << 20, 64)
    assert small.hv_frames < big.hv_frames < big.nr_frames
    assert Layout.reserve_bytes(2, 64 << 20) == Layout.compute(64 << 20, 2).hv_frames * 4096
    with pytest.raises(ValueError):
        Layout.compute(1 << 20, 4)


def test_free_pool_alloc_and_free(machine_ram):
    ram, layout, ft = machine_ram
    free = ft.header.free_count
    assert free == layout.nr_frames - layout.hv_frames
    assert all(ft.frames[m].owner == OWNER_XEN for m in range(layout.hv_frames))
    got = ft.alloc(7, 10)
    assert len(set(got)) == 10 and all(m >= layout.hv_frames for m in got)
    assert all(ft.frames[m].owner == 7 for m in got)
    assert ft.header.free_count == free - 10
    ft.free(got)
    assert ft.header.free_count == free
    assert all(ft.frames[m].owner == OWNER_NONE for m in got)


def test_ram_larger_than_dev_shm_is_refused_before_it_exists(monkeypatch):
    import os as _os

    from smpxen.shm import ram as ram_module

    class Full:
        f_bavail, f_frsize = 10, 4096
    monkeypatch.setattr(ram_module.os, "statvfs", lambda _path: Full())
    before = set(_os.listdir(ram_module.SHM_DIR))
    with pytest.raises(ram_module.OutOfSharedMemory, match="needs 16 MiB"):
        ram_module.MachineRAM.create(16 << 20)
    assert set(_os.listdir(ram_module.SHM_DIR)) == before
