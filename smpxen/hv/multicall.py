"""multicall (entry.S do_multicall): run a list of hypercalls, storing each result
into its entry's args[5]. A block, yield or shutdown in the list takes effect after
the list ran. A nested multicall entry is not executed (Xen falls straight back into
the loop), so its args[5] is left as it was.

The list is preemptible, as Xen's: when the PCPU has other work due the multicall
stops with a continuation for the entries left. A sub-call that itself makes a
continuation (a long mmu_update) writes its remaining arguments into its entry, and
the multicall's continuation starts again at that entry."""
import ctypes
import struct

from smpxen.hv.iface import Hypervisor
from smpxen.xen import errno
from smpxen.xen.hypercall import NR_HYPERCALLS, Hypercall
from smpxen.xen.structs import MULTICALL_RESULT_INDEX, MulticallEntry

_SIZE = ctypes.sizeof(MulticallEntry)
_RESULT_OFFSET = MulticallEntry.args.offset + 4 * MULTICALL_RESULT_INDEX
_unpack = struct.Struct("<8I").unpack
MAX_CALLS = (1 << 32) // _SIZE


def do_multicall(hv: Hypervisor, call_list, nr_calls, *_):
    if nr_calls >= MAX_CALLS:
        return -errno.EFAULT
    mem = hv.mem
    for i in range(nr_calls):
        va = call_list + i * _SIZE
        if i and hv.preempt_pending():
            return hv.create_continuation(Hypercall.multicall, va, nr_calls - i)
        op, a1, a2, a3, a4, a5, _r, _a7 = _unpack(mem.read(va, _SIZE))
        if op & (NR_HYPERCALLS - 1) == Hypercall.multicall:
            continue
        hv.multicall_entry, hv.multicall_preempted = va, False
        try:
            result = hv.hypercall(op, a1, a2, a3, a4, a5)
        finally:
            hv.multicall_entry = None
        if hv.multicall_preempted:
            return hv.create_continuation(Hypercall.multicall, va, nr_calls - i)
        mem.write_u32(va + _RESULT_OFFSET, result)
    return 0
