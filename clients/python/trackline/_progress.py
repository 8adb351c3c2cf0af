"""How a transfer reports its bytes (``Progress``), and the command line's progress bar on
stderr (``ProgressBar``): bytes done and expected, the percentage and the rate, redrawn in
place at most ten times a second."""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol, TextIO

REDRAW_SECONDS = 0.1
BAR_WIDTH = 30


class Progress(Protocol):
    """Where a transfer reports its bytes: ``expect`` once per file before its bytes move,
    ``advance`` as they do (negative when a transfer starts a file over). Called from
    several threads at once."""

    def expect(self, nbytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...


class ProgressBar:
    """A ``Progress`` drawn on ``stream`` (stderr) as
    ``upload [=======>      ]  45%  120.0/266.3 MB  84.2 MB/s``; ``close()`` (or leaving a
    ``with`` block) draws the last state and ends the line."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.total = 0
        self.done = 0
        self._began = time.monotonic()
        self._drawn_at = 0.0
        self._lock = threading.Lock()

    def expect(self, nbytes: int) -> None:
        with self._lock:
            self.total += nbytes
            self._draw(force=False)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            self._draw(force=False)

    def close(self) -> None:
        with self._lock:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_SECONDS:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.line(now - self._began))
        self.stream.flush()

    def line(self, seconds: float) -> str:
        """The bar as drawn after ``seconds`` of transfer."""
        share = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(share * BAR_WIDTH)
        bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * (BAR_WIDTH - filled - 1)
        rate = self.done / seconds / 1e6 if seconds > 0 else 0.0
        return (
            f"{self.label} [{bar[:BAR_WIDTH]}] {share:4.0%}"
            f"  {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB  {rate:.1f} MB/s"
        )


__all__ = ["Progress", "ProgressBar"]
