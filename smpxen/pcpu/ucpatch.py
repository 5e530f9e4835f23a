"""Unicorn 2.1 behaviour smpxen must correct to run every guest instruction
exactly once (scripts/probes/stop_rollback.py and scripts/probes/hook_eip_write.py
reproduce both faults on bare Unicorn and show the corrections work).

1. Unicorn's translator emits a stop-request check after *every* guest load and
   store. When another thread has called emu_stop, that check leaves the
   emulation with EIP rolled back to the start of the current instruction, even
   though the instruction's store has already been made. Resuming there runs the
   instruction again: `inc dword ptr [x]` adds two. The stop requests of the
   PCPU's watcher thread arrive at arbitrary moments, so a guest counter drifted
   once in roughly 10^5 stops (an event counted twice). Unicorn has a switch that
   suppresses these per-access checks (`uc_struct.no_exit_request`, meant for ARM
   IT blocks); with it set, a stop is taken only at the start of a translation
   block, where no instruction of the block has run. `forbid_mid_instruction_exits`
   finds the switch's offset in the engine structure by its neighbours (page
   sizes, the CPU context size the API reports, the initialised flag) and sets it.

2. `uc_reg_write` of EIP also sets `skip_sync_pc_on_exit`, which stays set until
   the next stop: a stop at a later block start then leaves EIP at whatever value
   the translated code last stored, not the block's address, and the guest
   resumes at a stale EIP. `uc_reg_write_batch` changes EIP without that flag, so
   CpuCore writes every register through it (`RegisterWriter`).
"""
from __future__ import annotations

import ctypes
import mmap
import struct

from unicorn.unicorn_py3.unicorn import uclib

# sizeof(struct uc_context) on a 64-bit host: size_t, mode, arch, snapshot_level,
# bool (padded), two pointers; uc_context_size() adds it to the CPU context size.
_UC_CONTEXT_HEADER = 40
_SCAN_BYTES = 8192          # the field lies ~2 KiB in; the structure is over 14 KiB
_uc_context_size = uclib.uc_context_size
_uc_context_size.restype = ctypes.c_size_t


class UnicornLayoutError(RuntimeError):
    """This Unicorn build does not have the layout smpxen was verified against."""


def no_exit_request_offset(handle) -> int:
    """Offset of uc_struct.no_exit_request, found by the run of fields before it:
    target_page_size (u32 4096), target_page_align (u32 4095), the host page size
    twice (u64), the icache line size, context_content, cpu_context_size (int,
    known from uc_context_size), next_pc (u64), then the bools hook_insert,
    first_tb, no_exit_request and init_done (1 once the engine is initialised)."""
    base = ctypes.cast(handle, ctypes.c_void_p).value
    cpu_context_size = _uc_context_size(handle) - _UC_CONTEXT_HEADER
    raw = ctypes.string_at(base, _SCAN_BYTES)
    page = mmap.PAGESIZE
    found = []
    for off in range(0, _SCAN_BYTES - 56, 8):
        if struct.unpack_from("<IIQQ", raw, off) != (4096, 4095, page, page):
            continue
        if struct.unpack_from("<i", raw, off + 32)[0] != cpu_context_size:
            continue
        hook_insert, _first_tb, no_exit, init_done = raw[off + 48:off + 52]
        if hook_insert in (0, 1) and no_exit in (0, 1) and init_done == 1:
            found.append(off + 50)
    if len(found) != 1:
        raise UnicornLayoutError(
            f"cannot locate Unicorn's no_exit_request switch (candidates {found}); "
            "this Unicorn build is not supported")
    return found[0]


def forbid_mid_instruction_exits(handle) -> None:
    """Make stop requests take effect only at translation-block starts. Call it
    after the engine is initialised (any API call) and flush translated code
    afterwards if some was already generated."""
    base = ctypes.cast(handle, ctypes.c_void_p).value
    ctypes.c_uint8.from_address(base + no_exit_request_offset(handle)).value = 1


def raw_function(name: str):
    """A function of the Unicorn library the binding loaded, without the binding's
    argument types: ctypes then checks nothing per call, which halves a call's cost
    (uc_reg_read_batch: ~0.7 -> ~0.3 us). Callers pass only ctypes objects of the
    right C types (the handle as the binding's c_void_p, arrays, c_int)."""
    fn = getattr(ctypes.CDLL(uclib._name), name)
    fn.restype = ctypes.c_int
    return fn


class RegisterWriter:
    """uc_reg_write_batch for one register at a time, with preallocated buffers:
    no skip_sync_pc_on_exit when the register is EIP."""

    def __init__(self, handle):
        self._h = handle
        self._write = raw_function("uc_reg_write_batch")
        self._id = (ctypes.c_int * 1)()
        self._value = ctypes.c_uint32()
        self._ptrs = (ctypes.c_void_p * 1)(ctypes.addressof(self._value))

    def __call__(self, reg: int, value: int) -> None:
        self._id[0] = reg
        self._value.value = value & 0xFFFFFFFF
        self._write(self._h, self._id, self._ptrs, 1)
