"""`smpxen xm`'s client (smpxen/control/xm.py): which machine --machine names."""
import os

import pytest
import zmq

from smpxen.control.endpoint import control_endpoint
from smpxen.control.xm import NoMachine, find_machine


@pytest.fixture
def bound_endpoint():
    """An endpoint bound here under this process's id, as a machine binds its own."""
    tag = f"{os.getpid()}-a9c0de"
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(control_endpoint(tag))
    yield tag
    sock.close()


def test_a_machine_is_found_by_tag_pid_or_endpoint(bound_endpoint):
    tag = bound_endpoint
    address = control_endpoint(tag)
    for name in (tag, str(os.getpid()), address):
        assert find_machine(name) == (address, os.getpid())


@pytest.mark.parametrize("name,says", [
    ("ipc://@nonexistent", "not a control endpoint"),           # ZeroMQ would wait for ever
    ("ipc:///tmp/some-socket", "not a control endpoint"),
    ("tcp://127.0.0.1:1", "not a control endpoint"),
    ("ipc://@smpxen-999999999-abc-control", "no running machine '999999999-abc'"),
    ("999999999-abc", "no running machine"),
])
def test_anything_else_is_one_line_at_once(name, says):
    with pytest.raises(NoMachine, match=says) as e:
        find_machine(name)
    assert "\n" not in str(e.value)
