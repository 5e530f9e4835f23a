"""The PCPU's watcher thread (smpxen/pcpu/watcher.py) over a real inbox socket: it
queues messages and wakes the main thread, sleeps while no slice runs, and is woken
to stop a slice at its deadline even from that sleep."""
import threading
import time

import pytest
import zmq

from smpxen.ipc import messages as M
from smpxen.pcpu.watcher import Watcher


@pytest.fixture
def watcher():
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.bind("inproc://watcher-test")
    outbox = ctx.socket(zmq.PUSH)
    outbox.connect("inproc://watcher-test")
    stops = []
    stopped = threading.Event()

    def stop_core():
        stops.append(time.monotonic_ns())
        stopped.set()
    w = Watcher(inbox, stop_core)
    w.stops, w.stopped, w.outbox = stops, stopped, outbox
    w.start()
    yield w
    w.close()
    outbox.close(linger=0)
    inbox.close(linger=0)
    ctx.term()


def wait_asleep(w, timeout=2.0):
    end = time.monotonic() + timeout
    while not w._asleep:
        assert time.monotonic() < end, "the watcher never went to sleep"
        time.sleep(0.001)


def test_idle_watcher_sleeps_and_a_message_wakes_it(watcher):
    wait_asleep(watcher)
    watcher.outbox.send(M.encode(M.IPI_EVENT_CHECK, 3))
    assert watcher.wake.wait(2.0)
    assert list(watcher.queue) == [[M.IPI_EVENT_CHECK, 3]]
    assert watcher.stops == []                   # no slice ran: nothing to stop


def test_a_slice_begun_while_the_watcher_sleeps_is_stopped_at_its_deadline(watcher):
    wait_asleep(watcher)
    deadline = time.monotonic_ns() + 5_000_000
    watcher.begin_slice(deadline)
    assert watcher.stopped.wait(2.0), "the sleeping watcher missed the slice's deadline"
    assert watcher.stops[0] >= deadline
    watcher.end_slice()


def test_a_message_during_a_slice_stops_it(watcher):
    wait_asleep(watcher)
    watcher.begin_slice(None)
    watcher.outbox.send(M.encode(M.IPI_EVENT_CHECK, 1))
    assert watcher.stopped.wait(2.0)
    watcher.end_slice()
    assert len(watcher.queue) == 1


def test_close_wakes_a_sleeping_watcher(watcher):
    wait_asleep(watcher)
    t = time.monotonic()
    watcher.close()
    assert not watcher.is_alive() and time.monotonic() - t < 1.0
    watcher.close = lambda: None                 # the fixture's close is done


def test_event_messages_get_their_arrival_time_appended(watcher):
    before = time.monotonic_ns()
    watcher.outbox.send(M.encode(M.IPI_EVTCHN_SET, 1, 3, 5, before))
    watcher.outbox.send(M.encode(M.IPI_EVENT_CHECK, 1))
    end = time.monotonic() + 2
    while len(watcher.queue) < 2:
        assert time.monotonic() < end
        time.sleep(0.001)
    event, other = watcher.queue
    assert event[:5] == [M.IPI_EVTCHN_SET, 1, 3, 5, before]
    assert before <= event[5] <= time.monotonic_ns()
    assert other == [M.IPI_EVENT_CHECK, 1]


def test_ping_calls_and_timed_replies_get_their_arrival_time(watcher):
    watcher.timed.add((2, 7))
    before = time.monotonic_ns()
    watcher.outbox.send(M.encode(M.IPI_CALL, 2, 7, "ping", []))       # same (src, seq) as the reply
    watcher.outbox.send(M.encode(M.IPI_REPLY, 2, 7, None))            # timed
    watcher.outbox.send(M.encode(M.IPI_REPLY, 2, 8, None))            # not timed
    watcher.outbox.send(M.encode(M.IPI_CALL, 2, 9, "dom_pause", [1, True]))
    end = time.monotonic() + 2
    while len(watcher.queue) < 4:
        assert time.monotonic() < end
        time.sleep(0.001)
    assert set(watcher.arrivals) == {(M.IPI_CALL, 2, 7), (M.IPI_REPLY, 2, 7)}
    assert all(before <= t <= time.monotonic_ns() for t in watcher.arrivals.values())
