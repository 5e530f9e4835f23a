"""Sweep progress on stderr: a bar redrawn in place on a terminal, one line per
finished run otherwise. Both show done/total, the point, elapsed time and an ETA
(the mean time of the runs this sweep has executed, times the runs left, divided
by how many run at once)."""
from __future__ import annotations

import shutil
import time


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int, done: int, stream, parallel: int = 1):
        self.total, self.done, self.stream = total, done, stream
        self.parallel = max(1, parallel)
        self.executed = 0            # runs this sweep ran (skipped ones cost nothing)
        self.t0 = time.monotonic()
        self.current = ""
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._drawn = False
        self._last = 0.0

    def eta(self) -> float | None:
        if not self.executed:
            return None
        left = self.total - self.done
        return (time.monotonic() - self.t0) / self.executed * left / self.parallel

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        return (f"{self.done}/{self.total} {self.current}  elapsed {_clock(elapsed)}  "
                f"ETA {_clock(self.eta()) if self.done < self.total else '0:00'}")

    def start(self, label: str) -> None:
        self.current = label
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        width = shutil.get_terminal_size((100, 20)).columns
        n = 20
        filled = n * self.done // max(1, self.total)
        text = f"[{'#' * filled}{'.' * (n - filled)}] " + self.line()
        self.stream.write("\r" + text[:width - 1].ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def finished(self, label: str, status, elapsed_s: float | None) -> None:
        self.done += 1
        self.executed += 1
        self.current = label
        if self.tty:
            self.draw(force=True)
        else:
            how = "killed" if status is None else f"exit {status}"
            self.say(f"sweep: {self.done}/{self.total} {label}: {how} in "
                     f"{elapsed_s or 0:.1f}s; elapsed {_clock(time.monotonic() - self.t0)}, "
                     f"ETA {_clock(self.eta()) if self.done < self.total else '0:00'}")

    def say(self, text: str) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
