"""xentrace's binary output: every record as CPU (u32) followed by its t_rec
(u64 cycles, u32 event, u32 d1..d5), little-endian, 36 bytes, no header (the
xentrace of Xen 2.0 and 3.0: tools/xentrace/xentrace.c write_rec). Records of one
CPU keep their order; CPUs are interleaved in the order the reader took them."""
from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from smpxen.config.schema import MAX_CPUS
from smpxen.xen.trace import FILE_REC_FORMAT, FILE_REC_SIZE, REC_SIZE

_file_rec = struct.Struct(FILE_REC_FORMAT)
_WORDS_IN, _WORDS_OUT = REC_SIZE // 4, FILE_REC_SIZE // 4
assert sys.byteorder == "little" and array("I").itemsize == 4


class TraceFileError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    cpu: int
    cycles: int
    event: int
    d: tuple            # d1..d5

    def pack(self) -> bytes:
        return _file_rec.pack(self.cpu, self.cycles, self.event, *self.d)


def frame(cpu: int, raw: bytes) -> bytes:
    """Raw t_recs of one buffer (REC_SIZE each) as file records of `cpu`: the CPU
    word is interleaved with array slices, not a Python loop per record."""
    n = len(raw) // REC_SIZE
    if n == 0:
        return b""
    words = array("I")
    words.frombytes(raw)
    out = array("I", bytes(n * FILE_REC_SIZE))
    out[0::_WORDS_OUT] = array("I", [cpu]) * n
    for k in range(_WORDS_IN):
        out[k + 1::_WORDS_OUT] = words[k::_WORDS_IN]
    return out.tobytes()


def _not_a_trace(path: str, offset: int, cpu: int):
    raise TraceFileError(f"{path}: the record at byte {offset} names CPU {cpu} "
                         f"(smpxen has at most {MAX_CPUS}): not a trace file")


def iter_records(f: BinaryIO, path: str = "trace") -> Iterator[Record]:
    """Records of a trace file, in file order. A file that ends inside a record,
    or a record naming a CPU no machine has (the format has no header: this is
    how a file that is not a trace shows), raises TraceFileError after the whole
    records before it."""
    offset = 0
    while True:
        chunk = f.read(FILE_REC_SIZE * 4096)
        if not chunk:
            return
        whole = len(chunk) - len(chunk) % FILE_REC_SIZE
        for k, (cpu, cycles, event, *d) in enumerate(_file_rec.iter_unpack(chunk[:whole])):
            if cpu >= MAX_CPUS:
                _not_a_trace(path, offset + k * FILE_REC_SIZE, cpu)
            yield Record(cpu, cycles, event, tuple(d))
        offset += whole
        if whole != len(chunk):
            rest = chunk[whole:] + f.read(FILE_REC_SIZE - (len(chunk) - whole))
            if len(rest) != FILE_REC_SIZE:
                raise TraceFileError(f"{path}: ends inside a record at byte {offset} "
                                     f"(records are {FILE_REC_SIZE} bytes)")
            cpu, cycles, event, *d = _file_rec.unpack(rest)
            if cpu >= MAX_CPUS:
                _not_a_trace(path, offset, cpu)
            yield Record(cpu, cycles, event, tuple(d))
            offset += FILE_REC_SIZE


def read_records(path: str) -> list[Record]:
    try:
        with open(path, "rb") as f:
            return list(iter_records(f, path))
    except OSError as e:
        raise TraceFileError(f"{path}: {e.strerror or e}") from None
