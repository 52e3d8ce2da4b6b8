"""A one-line progress display on a terminal: bytes, bytes/s and ETA."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """Call with (done, total, entries); draws at most 5 times a second, only
    after the work has run for ``delay`` seconds, only on a terminal."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, delay: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.t0 = time.monotonic()
        self.delay = delay
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: Optional[int], entries: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        elapsed = now - self.t0
        if elapsed < self.delay or now - self.last < 0.2:
            return
        self.last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        line = f"{self.label}: {human(done)}"
        if total:
            pct = min(100.0, 100.0 * done / total)
            eta = (total - done) / rate if rate > 0 else 0
            line += f" / {human(total)} ({pct:.0f}%)  {human(rate)}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        else:
            line += f"  {human(rate)}/s"
        line += f"  {entries} entries"
        self.stream.write("\r" + line[:200] + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
