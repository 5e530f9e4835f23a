"""The per-PCPU trace ring (smpxen/trace/ring.py) and the machine's trace area
(smpxen/trace/area.py): any interleaving of writes and reads, wraparound, a full
buffer that drops and counts, and what the reader takes."""
import mmap
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpxen.trace.area import BufferReader, TraceAreaError, format_area, tbuf_info
from smpxen.trace.records import iter_records
from smpxen.trace.ring import TraceReader, TraceWriter, format_buffer
from smpxen.xen.trace import REC_FORMAT, REC_SIZE, TBUF_HEADER, TRC_LOST_RECORDS, TRC_SCHED_SWITCH, TBuf

EVENT = TRC_SCHED_SWITCH


def ring(records: int):
    """A buffer of exactly `records` slots at offset 64 of a scratch mapping."""
    size = TBUF_HEADER + records * REC_SIZE
    mem = mmap.mmap(-1, 64 + size + 4096)
    format_buffer(mem, 64, 0x1000, size)
    w = TraceWriter(mem, 64, 0xFFFF0000, lambda: 0)
    return mem, w, TraceReader(mem, 64)


def parse(raw: bytes):
    return [struct.unpack_from(REC_FORMAT, raw, i) for i in range(0, len(raw), REC_SIZE)]


def test_buffer_header_as_xen_2_0_lays_it_out():
    mem, w, r = ring(10)
    hdr = TBuf.from_buffer(mem, 64)
    assert (hdr.data, hdr.size, hdr.head, hdr.tail, hdr.lost) == (0x1000 + TBUF_HEADER, 10, 0, 0, 0)
    assert [TBuf.data.offset, TBuf.size.offset, TBuf.head.offset] == [0, 4, 8]


def test_records_come_out_in_order_and_negative_words_wrap():
    mem, w, r = ring(8)
    w.put(5, EVENT, -1, 2, 3, 4, 1 << 33)
    w.put(6, EVENT + 1)
    got = parse(r.take())
    assert got == [(5, EVENT, 0xFFFFFFFF, 2, 3, 4, 0), (6, EVENT + 1, 0, 0, 0, 0, 0)]
    assert r.take() == b"" and r.pending() == 0


def test_a_full_buffer_drops_counts_and_says_so_once_there_is_room():
    mem, w, r = ring(4)                       # holds 3
    for i in range(10):
        w.put(100 + i, EVENT, i)
    assert w.lost == 7 and r.pending() == 3
    assert [rec[2] for rec in parse(r.take())] == [0, 1, 2]
    w.put(200, EVENT, 99)                      # room again: the marker, then the record
    got = parse(r.take())
    assert got[0][1] == TRC_LOST_RECORDS and got[0][2] == 7
    assert got[0][4] | got[0][5] << 32 == 103          # cycles of the first record lost
    assert got[1][1:3] == (EVENT, 99)
    assert w.lost == 7


def test_mask_is_xens_rule():
    mem, w, r = ring(8)
    w.mask = 0x00020000
    w.trace(0x00020001)
    w.trace(0x01000001)
    assert [rec[1] for rec in parse(r.take())] == [0x00020001]


ops = st.lists(st.one_of(st.tuples(st.just("w"), st.integers(1, 12)), st.just(("r",))), max_size=60)


@settings(max_examples=300, deadline=None)
@given(slots=st.integers(2, 9), script=ops)
def test_any_interleaving_of_writes_and_reads(slots, script):
    """Whatever the order of writes and reads: the reader gets the records in the
    order written, each once; every gap is announced by a TRC_LOST_RECORDS giving
    its exact size and first cycles; nothing is ever more than the ring holds; and
    the header's lost count is exactly what never arrived."""
    mem, w, r = ring(slots)
    seq = 0
    got = []
    for op in script + [("r",)]:
        if op[0] == "w":
            for _ in range(op[1]):
                w.put(1000 + seq, EVENT, seq)
                seq += 1
                assert r.pending() <= slots - 1
        else:
            got += parse(r.take())
    expected_next, announced = 0, 0
    for cycles, event, d1, d2, d3, d4, d5 in got:
        if event == TRC_LOST_RECORDS:
            assert d1 > 0 and d3 | d4 << 32 == 1000 + expected_next
            announced = d1
            continue
        missing = d1 - expected_next
        assert missing == announced, "a gap without its announcement (or the other way round)"
        assert cycles == 1000 + d1
        expected_next, announced = d1 + 1, 0
    dropped_at_end = seq - expected_next
    assert w.lost == seq - sum(1 for g in got if g[1] != TRC_LOST_RECORDS)
    assert dropped_at_end == w.pending_lost + announced


def test_area_gives_gettbufs_answer_and_the_reader_takes_every_buffer(tmp_path):
    from smpxen.shm.frametable import FrameTable
    from smpxen.shm.layout import Layout
    from smpxen.shm.locks import Locks
    from smpxen.shm.ram import MachineRAM
    layout = Layout.compute(16 << 20, 2, trace_pages=2)
    plain = Layout.compute(16 << 20, 2)
    assert layout.hv_frames == plain.hv_frames + 4 and layout.tbuf_mfn == plain.hv_frames
    assert layout.tbuf_maddr(1) == layout.tbuf_maddr(0) + 2 * 4096
    ram = MachineRAM.create(16 << 20)
    ram.unlink()
    try:
        ft = FrameTable(ram, layout, Locks(ram.fd))
        ft.format()
        format_area(ram.mem, layout, ft.header, 0xFFFF0000)
        info = tbuf_info(ft.header)
        assert (info.mach_addr, info.size, info.nr_pcpus) == (layout.tbuf_maddr(0), 8192, 2)
        w1 = TraceWriter(ram.mem, info.mach_addr + info.size, info.mask, lambda: 7)
        w1.trace(EVENT, 1)
        reader = BufferReader(ram.mem, ram.fd)
        out = tmp_path / "t.bin"
        with open(out, "wb") as f:
            assert reader.drain(f) == 1
            assert reader.drain(f) == 0
        with open(out, "rb") as f:
            (rec,) = list(iter_records(f))
        assert (rec.cpu, rec.cycles, rec.event, rec.d[0]) == (1, 7, EVENT, 1)
        assert reader.summary()["per_pcpu"] == [{"records": 0, "lost": 0}, {"records": 1, "lost": 0}]
        reader.release()
        # A reader that comes late (smpxen xentrace) counts only what is lost while it reads.
        w0 = TraceWriter(ram.mem, info.mach_addr, info.mask, lambda: 9)
        for i in range(300):                       # 254 slots: 46 dropped with no reader
            w0.trace(EVENT, i)
        late = BufferReader(ram.mem, ram.fd)
        assert late.lost_before == [46, 0] and late.summary()["lost"] == 0
        with open(tmp_path / "late.bin", "wb") as f:
            assert late.drain(f) == 254
            for i in range(300):
                w0.trace(EVENT, i)
        assert late.summary()["lost"] == w0.lost - 46 > 0
        late.release()
        del reader, late, w0, w1, ft
    finally:
        ram.close()


def test_a_machine_without_buffers_has_nothing_to_read(machine_ram):
    ram, layout, ft = machine_ram
    format_area(ram.mem, layout, ft.header, 0xFFFF0000)
    assert tbuf_info(ft.header) is None and ft.header.tb_event_mask == 0
    with pytest.raises(TraceAreaError, match="no trace buffers"):
        BufferReader(ram.mem, ram.fd)
    with pytest.raises(TraceAreaError, match="not an smpxen"):
        BufferReader(bytearray(4096), ram.fd)


def test_the_collector_looks_again_before_the_fullest_buffer_is_half_full():
    from smpxen.trace.collect import MIN_POLL_S, POLL_S, next_poll_s
    assert next_poll_s(0.0, POLL_S) == POLL_S                # nothing written: the longest wait
    assert next_poll_s(0.2, POLL_S) == POLL_S                # half full in 2.5 periods: the longest
    assert next_poll_s(0.8, 0.016) == pytest.approx(0.01)    # 80 % in 16 ms: half full in 10 ms
    assert next_poll_s(1.0, 0.001) == MIN_POLL_S             # never sooner than 2 ms
    assert next_poll_s(0.0, 0.1, 0.1) == 0.1                 # smpxen xentrace -s 100: its own longest
    assert next_poll_s(0.8, 0.1, 0.1) == pytest.approx(0.0625)
