"""Console output of every domain, shown line by line as it arrives, prefixed by
the domain it came from, and kept for the report. Bounded: the PCPUs bound each
domain's rate (smpxen/pcpu/console.py) and say what they dropped, which appears in
place as a note; a line longer than MAX_LINE is cut into pieces; the report keeps
each domain's last KEPT_LINES lines and counts the ones it let go. For `smpxen xm
console` it also keeps each domain's last LOG_BYTES bytes of output as they came,
numbered from the domain's first byte, so a reader can follow from where it was.

The PCPUs number each domain's console messages (smpxen/pcpu/console.py); one that
arrives before its turn (the domain moved, and its new PCPU's message overtook the
old one's) waits for the ones before it. Whatever still waits at the end of the run
is shown in order. Output still on its way from a PCPU a domain left when the domain
is destroyed is lost (or, if the id is handed out again at once, may be shown as the
new domain's: the numbers start again with each domain)."""
from __future__ import annotations

import collections
import sys

MAX_LINE = 16 * 1024
KEPT_LINES = 10_000
LOG_BYTES = 64 * 1024


class ConsoleMux:
    def __init__(self, names: dict[int, str], stream=None, quiet: bool = False):
        self.names = names
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.partial: dict[int, bytearray] = {}
        self.lines: dict[int, collections.deque] = {d: collections.deque(maxlen=KEPT_LINES) for d in names}
        self.lines_dropped = collections.Counter()   # domid -> lines that fell off the kept window
        self.bytes_dropped: dict[int, int] = {}      # output the PCPUs dropped at the bound
        self.log: dict[int, bytearray] = {}          # domid -> its last LOG_BYTES of output
        self.log_end: dict[int, int] = {}            # domid -> bytes it output so far
        self.next_seq: dict[int, int] = {}           # domid -> number of its next message
        self.early: dict[int, dict[int, tuple]] = {}  # domid -> seq -> (dropped?, payload)

    def prefix(self, domid: int) -> str:
        return f"[d{domid} {self.names.get(domid, '?')}]"

    def _log(self, domid: int, data: bytes) -> None:
        log = self.log.setdefault(domid, bytearray())
        log += data
        if len(log) > LOG_BYTES:
            del log[:len(log) - LOG_BYTES]
        self.log_end[domid] = self.log_end.get(domid, 0) + len(data)

    def output_since(self, domid: int, offset: int) -> tuple[int, bytes, int]:
        """(new offset, the domain's output from `offset` on, bytes lost because they
        left the log before they were read)."""
        end = self.log_end.get(domid, 0)
        log = self.log.get(domid, b"")
        start = end - len(log)
        offset = min(max(offset, 0), end)
        lost = max(0, start - offset)
        return end, bytes(log[max(offset, start) - start:]), lost

    def forget(self, domid: int) -> None:
        """The domain is gone (its id may be handed out again): drop its log."""
        self.log.pop(domid, None)
        self.log_end.pop(domid, None)
        self.next_seq.pop(domid, None)
        self.early.pop(domid, None)

    def arrived(self, dropped: bool, domid: int, seq: int, payload) -> None:
        """CONSOLE (bytes) or CONSOLE_DROPPED (a count) number seq of the domain's."""
        expected = self.next_seq.get(domid, 0)
        ahead = (seq - expected) & 0xFFFFFFFF
        if ahead >= 1 << 31:
            return                       # a number passed: late output of a destroyed domain
        early = self.early.setdefault(domid, {})
        early[seq] = (dropped, payload)
        while expected in early:
            dropped, payload = early.pop(expected)
            expected = (expected + 1) & 0xFFFFFFFF
            self._show(domid, dropped, payload)
        self.next_seq[domid] = expected
        if not early:
            del self.early[domid]

    def release(self, domid: int) -> None:
        """Show the domain's messages that wait for one before them, in order (the
        machine is ending, or the domain is gone)."""
        early = self.early.pop(domid, {})
        for seq in sorted(early, key=lambda s: (s - self.next_seq.get(domid, 0)) & 0xFFFFFFFF):
            self._show(domid, *early[seq])

    def _show(self, domid: int, dropped: bool, payload) -> None:
        if dropped:
            self.dropped(domid, payload)
        else:
            self.feed(domid, payload)

    def feed(self, domid: int, data: bytes) -> None:
        self._log(domid, data)
        buf = self.partial.setdefault(domid, bytearray())
        buf.extend(data)
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) < MAX_LINE:
                    break
                nl = MAX_LINE
                self._emit(domid, bytes(buf[:nl]))
                del buf[:nl]
                continue
            self._emit(domid, bytes(buf[:nl]))
            del buf[:nl + 1]

    def dropped(self, domid: int, nbytes: int) -> None:
        """The domain's PCPU dropped nbytes of its output (over the bound)."""
        self.bytes_dropped[domid] = self.bytes_dropped.get(domid, 0) + nbytes
        self._log(domid, f"\n[smpxen: {nbytes} bytes of console output dropped: over the "
                         f"domain's bound]\n".encode())
        buf = self.partial.get(domid)
        if buf:
            self._emit(domid, bytes(buf))
            buf.clear()
        self._emit(domid, f"[smpxen: {nbytes} bytes of console output dropped: over the "
                          f"domain's bound]".encode())

    def flush(self, held_too: bool = False) -> None:
        """Show every domain's unfinished line (held_too: and, first, the messages
        still waiting for one before them, in order)."""
        if held_too:
            for domid in list(self.early):
                self.release(domid)
        for domid, buf in self.partial.items():
            if buf:
                self._emit(domid, bytes(buf))
                buf.clear()

    def _emit(self, domid: int, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        kept = self.lines.setdefault(domid, collections.deque(maxlen=KEPT_LINES))
        if len(kept) == KEPT_LINES:
            self.lines_dropped[domid] += 1
        kept.append(text)
        if not self.quiet:
            self.stream.write(f"{self.prefix(domid)} {text}\n")
            self.stream.flush()
