"""Console output: the machine's line assembly and bounds (smpxen/machine/console.py)
and each domain's budget on its PCPU (smpxen/pcpu/console.py)."""
import io

from smpxen.machine.console import ConsoleMux


def test_console_mux_assembles_lines():
    out = io.StringIO()
    mux = ConsoleMux({1: "a", 2: "b"}, out)
    mux.feed(1, b"hel")
    mux.feed(2, b"x\ny")
    mux.feed(1, b"lo\r\nworld")
    mux.flush()
    assert out.getvalue() == "[d2 b] x\n[d1 a] hello\n[d1 a] world\n[d2 b] y\n"
    assert {d: list(lines) for d, lines in mux.lines.items()} == {1: ["hello", "world"], 2: ["x", "y"]}


def test_console_mux_bounds_lines_and_notes_drops(monkeypatch):
    from smpxen.machine import console
    monkeypatch.setattr(console, "KEPT_LINES", 3)
    out = io.StringIO()
    mux = ConsoleMux({1: "a"}, out)
    mux.feed(1, b"x" * (console.MAX_LINE + 5))       # no newline: cut at MAX_LINE
    mux.feed(1, b"\nhalf")
    mux.dropped(1, 4096)                            # the partial line goes out first
    mux.feed(1, b"1\n2\n")
    assert list(mux.lines[1]) == ["[smpxen: 4096 bytes of console output dropped: over the domain's bound]",
                                  "1", "2"]
    assert mux.lines_dropped[1] == 3 and mux.bytes_dropped[1] == 4096
    assert out.getvalue().count("\n") == 6


def test_console_budget_is_a_token_bucket():
    from smpxen.pcpu.console import BURST_BYTES, RATE_BYTES_PER_S, ConsoleBudget
    b = ConsoleBudget()
    assert b.admit(BURST_BYTES, 0.0) == (True, 0)
    assert b.admit(100, 0.0) == (False, 0)           # empty: dropped and counted
    assert b.admit(200, 0.0) == (False, 0)
    assert b.admit(100, 300 / RATE_BYTES_PER_S) == (True, 300)   # refilled: told of the loss
    assert b.admit(1, 10.0) == (True, 0)
    b.admit(BURST_BYTES + 1, 10.0)                  # never fits: always dropped
    assert b.take_dropped() == BURST_BYTES + 1 and b.take_dropped() == 0


def test_console_messages_are_shown_in_the_order_the_domain_wrote_them():
    """A domain that moves writes from another PCPU, whose messages may be read first
    (smpxen/pcpu/console.py numbers them; the machine puts them back in order)."""
    from types import SimpleNamespace

    from smpxen.ipc import messages as M
    from smpxen.pcpu.console import ConsoleBudget, ConsoleOut
    sent = []
    mailbox = SimpleNamespace(send_machine=lambda *parts: sent.append(parts))
    v = SimpleNamespace(domid=1, info=SimpleNamespace(console_seq=0), console=ConsoleBudget())
    ConsoleOut(mailbox, 0).write(v, b"one\n")
    v.console.dropped = 7                                    # the bound dropped some on the way
    ConsoleOut(mailbox, 1).write(v, b"two\n")                # after a move: the count went along
    ConsoleOut(mailbox, 1).write(v, b"three\n")
    assert [m[:4] for m in sent] == [(M.CONSOLE, 0, 1, 0), (M.CONSOLE_DROPPED, 1, 1, 1),
                                     (M.CONSOLE, 1, 1, 2), (M.CONSOLE, 1, 1, 3)]
    mux = ConsoleMux({1: "a"}, io.StringIO())
    for kind, _pcpu, domid, seq, payload in (sent[2], sent[3], sent[0], sent[1]):   # pcpu1 read first
        mux.arrived(kind == M.CONSOLE_DROPPED, domid, seq, payload)
    assert list(mux.lines[1]) == ["one", "[smpxen: 7 bytes of console output dropped: over the domain's bound]",
                                  "two", "three"]
    assert mux.output_since(1, 0)[1].startswith(b"one\n\n[smpxen: 7 bytes")
    mux.arrived(False, 1, 2, b"again\n")                     # a number passed: not shown twice
    mux.arrived(False, 1, 6, b"six\n")                       # 4 and 5 still on their way
    mux.flush()
    assert list(mux.lines[1])[-1] == "three"
    mux.flush(held_too=True)                                 # the run ends: shown all the same
    assert list(mux.lines[1])[-1] == "six"
    mux.forget(1)                                            # its id may be handed out again
    mux.arrived(False, 1, 0, b"new\n")
    assert list(mux.lines[1])[-1] == "new"
