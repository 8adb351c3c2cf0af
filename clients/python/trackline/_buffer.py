"""The buffer ``log`` appends to, its bound and its backpressure: the base of MetricSender.

``log`` appends a tuple to a deque and returns; only every few thousand points (or when the
buffer is full) does it take the slow path, which wakes the batcher and, at the bound, waits.
The points held count twice over: those in the buffer and those in batches the server has
not acknowledged (``UnackedBatches``), which a reconnect resends.
"""

from __future__ import annotations

import abc
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ._unacked import UnackedBatches

logger = logging.getLogger("trackline")

WAKE_POINTS = 10_000  # pending points that wake the batcher before its timer
DEFAULT_MAX_BUFFERED_POINTS = 10_000_000
_time_ns = time.time_ns


class FlushMarker:
    """Queued by ``flush`` after the points logged before it; the batcher sets ``target`` to
    the last seq it assigned when it takes the marker, so every point logged before it is in a
    batch <= target."""

    __slots__ = ("target",)

    def __init__(self) -> None:
        self.target: int | None = None


def env_max_buffered() -> int:
    raw = os.environ.get("TRACKLINE_MAX_BUFFERED_POINTS")
    return int(raw) if raw else DEFAULT_MAX_BUFFERED_POINTS


def _env_rank() -> int:
    try:
        return int(os.environ.get("RANK") or 0)
    except ValueError:
        return 0


class PointBuffer(abc.ABC):
    """The points logged and not yet acknowledged by the server, bounded by
    ``max_buffered_points``: at the bound ``log`` blocks until the server has taken enough
    points (a warning is logged once per such episode); points are never dropped.

    ``_cond`` guards the batches (``_unacked``) and whatever the subclass adds; ``_wake``
    tells the consumer (the subclass's batcher) that points are waiting."""

    uri: str

    def __init__(self, max_buffered_points: int | None) -> None:
        self.max_buffered_points = (
            max_buffered_points if max_buffered_points is not None else env_max_buffered()
        )
        if self.max_buffered_points < 1:
            raise ValueError("max_buffered_points must be positive")
        self._closed = False

    def _init_buffer(self) -> None:
        """A fresh, empty buffer (constructor, and the child after ``fork``)."""
        self._rank = _env_rank()
        self._buf: deque[tuple[Any, ...]] = deque()
        # Flush markers: apart from the points, so that a drain never has to look for them.
        self._markers: deque[FlushMarker] = deque()
        # Points in the buffer at which log() takes the slow path: 0 until the threads run.
        self._check_at = 0
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._unacked = UnackedBatches()
        self._blocked = False  # a log() call is waiting for room (one warning per episode)

    # The hot path.
    def log(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int = 0,
        timestamp_ms: int | None = None,
        rank: int | None = None,
    ) -> None:
        """Buffers one point and returns (blocks only at ``max_buffered_points``).
        ``timestamp_ms`` defaults to now; ``rank`` to the RANK environment variable, or 0."""
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000
        buf = self._buf
        buf.append(
            (run_id, key, self._rank if rank is None else rank, step, timestamp_ms, float(value))
        )
        if len(buf) >= self._check_at:
            self._slow_path()

    def log_many(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int = 0,
        timestamp_ms: int | None = None,
        rank: int | None = None,
    ) -> None:
        """Buffers one point per key of ``metrics``, all with the same step and timestamp."""
        if timestamp_ms is None:
            timestamp_ms = _time_ns() // 1_000_000
        r = self._rank if rank is None else rank
        points = [(run_id, k, r, step, timestamp_ms, float(v)) for k, v in metrics.items()]
        buf = self._buf
        buf.extend(points)
        if len(buf) >= self._check_at:
            self._slow_path()

    @abc.abstractmethod
    def _start(self) -> None:
        """Starts the consumer of the buffer unless it runs; raises RuntimeError when the
        buffer is closed."""

    @abc.abstractmethod
    def _running(self) -> bool:
        """Whether the consumer of the buffer runs."""

    def _slow_path(self) -> None:
        if self._closed or not self._running():
            self._start()
        if not self._wake.is_set():
            self._wake.set()
        if self._held() >= self.max_buffered_points:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        with self._cond:
            while self._held() >= self.max_buffered_points and not self._closed:
                if not self._blocked:
                    self._blocked = True
                    logger.warning(
                        "trackline: %d metric points are waiting for the server at %s "
                        "(unreachable or slower than the logging); logging is blocked until "
                        "it takes them (max_buffered_points=%d)",
                        self._held(),
                        self.uri,
                        self.max_buffered_points,
                    )
                self._wake.set()
                self._cond.wait(1.0)

    def _update_check_at(self) -> None:  # under self._cond
        room = self.max_buffered_points - self._unacked.points
        self._check_at = max(1, min(WAKE_POINTS, room))

    def _settled(self) -> None:  # under self._cond
        """After the server settled batches: there is room again, and flush may be done."""
        self._update_check_at()
        if self._blocked and self._held() < self.max_buffered_points:
            self._blocked = False
            logger.warning("trackline: the server takes metric points again; logging resumed")
        self._cond.notify_all()

    def _held(self) -> int:
        """The points not yet stored: buffered, or in unacknowledged batches."""
        return len(self._buf) + self._unacked.points
