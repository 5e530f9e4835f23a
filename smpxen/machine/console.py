"""Console output of every domain, shown line by line as it arrives, prefixed by
the domain it came from."""
from __future__ import annotations

import sys


class ConsoleMux:
    def __init__(self, names: dict[int, str], stream=None, quiet: bool = False):
        self.names = names
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.partial: dict[int, bytearray] = {}
        self.lines: dict[int, list[str]] = {d: [] for d in names}

    def prefix(self, domid: int) -> str:
        return f"[d{domid} {self.names.get(domid, '?')}]"

    def feed(self, domid: int, data: bytes) -> None:
        buf = self.partial.setdefault(domid, bytearray())
        buf.extend(data)
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            self._emit(domid, bytes(buf[:nl]))
            del buf[:nl + 1]

    def flush(self) -> None:
        for domid, buf in self.partial.items():
            if buf:
                self._emit(domid, bytes(buf))
                buf.clear()

    def _emit(self, domid: int, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.lines.setdefault(domid, []).append(text)
        if not self.quiet:
            self.stream.write(f"{self.prefix(domid)} {text}\n")
            self.stream.flush()
