"""multicall (entry.S do_multicall): run a list of hypercalls, storing each result
into its entry's args[5]. Like Xen 2.0 the loop is not preempted: a block, yield or
shutdown in the list takes effect after the whole list ran. A nested multicall
entry is not executed (Xen falls straight back into the loop), so its args[5] is
left as it was."""
import ctypes
import struct

from smpxen.hv.dispatch import do_hypercall, hypercall
from smpxen.xen import errno, hypercall as nr
from smpxen.xen.hypercall import NR_HYPERCALLS
from smpxen.xen.structs import MULTICALL_RESULT_INDEX, MulticallEntry

_SIZE = ctypes.sizeof(MulticallEntry)
_RESULT_OFFSET = MulticallEntry.args.offset + 4 * MULTICALL_RESULT_INDEX
_unpack = struct.Struct("<8I").unpack
MAX_CALLS = (1 << 32) // _SIZE


@hypercall(nr.multicall)
def do_multicall(hv, call_list, nr_calls, *_):
    if nr_calls >= MAX_CALLS:
        return -errno.EFAULT
    mem = hv.mem
    for i in range(nr_calls):
        va = call_list + i * _SIZE
        op, a1, a2, a3, a4, a5, _r, _a7 = _unpack(mem.read(va, _SIZE))
        if op & (NR_HYPERCALLS - 1) == nr.multicall:
            continue
        mem.write_u32(va + _RESULT_OFFSET, do_hypercall(hv, op, a1, a2, a3, a4, a5))
    return 0
