"""Background streaming of metric points over ``IngestService.StreamMetrics``: MetricSender.

One ``MetricSender`` per process and server. ``log`` appends a tuple to a deque and returns
(``_buffer``); two daemon threads do the rest:

* the *batcher* (here) wakes every 50 ms, or at once when 10,000 points are pending, drains
  the deque into numbered batches (``_batching``: one run per batch, each ONE SeriesBlock
  encoded by ``_wire``), keeps each in the ordered unacked list (``_unacked``) and, when a
  stream is open, queues it for sending. ``flush`` queues a marker beside the points, which
  the batcher settles with the last seq it assigned;
* the *connection* thread (``_connection``) keeps the stream open, resends what the server
  has not stored after every reconnect and settles batches as acks come.

``_fork`` pauses the stream around a fork and flushes at exit. The stream runs on a
``Transport`` of its own (the client's kind: a channel per process, the token, the fork
handling), with the stream's keepalive and reconnect options (STREAM_CHANNEL_OPTIONS).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time

from . import _fork
from ._batching import build_batches
from ._buffer import FlushMarker, PointBuffer
from ._connection import STREAM_CHANNEL_OPTIONS, StreamConnection
from ._exceptions import BatchRejected, TracklineError
from ._transport import Transport

logger = logging.getLogger("trackline")

WAKE_SECONDS = 0.05


class MetricSender(PointBuffer):
    """Streams metric points to one server from a background thread, exactly once.

    ``log`` only appends to an in-process buffer (well under a microsecond). Points are
    stored in the order of their batches; ``flush`` waits until everything logged before it
    is stored and raises the first batch the server rejected as ``BatchRejected`` (rejected
    points are also logged on the ``trackline`` logger when the rejection arrives; they are
    never retried). Server restarts and network failures are ridden out by reconnecting and
    resending what the server has not acknowledged: nothing is lost or stored twice.

    ``uri``, ``token`` and the TLS settings (``ca_file``, ``client_cert``, ``client_key``)
    are read as ``TracklineClient`` reads them.

    Memory is bounded: when the points waiting in the buffer plus the points sent but not yet
    acknowledged reach ``max_buffered_points`` (default 10,000,000, or the environment
    variable ``TRACKLINE_MAX_BUFFERED_POINTS``), which happens when the server is unreachable
    or slower than the logging, ``log`` BLOCKS the calling thread until the server has taken
    enough points; points are never dropped. A warning is logged once per such episode.

    In a forked child the sender starts empty, under a new writer id: the child never sends
    the parent's points, and the parent is unaffected. gRPC supports ``fork`` only while no
    call is in progress (otherwise it skips its fork handlers, and the child's first channel
    could abort in gRPC's poller), so the parent ends its stream just before a fork and opens
    it again just after; batches not yet acknowledged are resent, exactly once as after any
    reconnect. At interpreter exit the sender
    flushes for up to 30 seconds (a warning says how many points could not be stored).
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        token: str | None = None,
        max_buffered_points: int | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(max_buffered_points)
        self._transport = Transport(
            uri,
            token=token,
            options=STREAM_CHANNEL_OPTIONS,
            ca_file=ca_file,
            client_cert=client_cert,
            client_key=client_key,
        )
        self.target = self._transport.target
        self.uri = self._transport.uri
        self.token = self._transport.token
        self._init_state()
        _fork.watch_sender(self)

    def _init_state(self) -> None:
        """Fresh per-process state (constructor, and the child after ``fork``)."""
        self._pid = os.getpid()
        self._init_buffer()
        self._start_lock = threading.Lock()
        self._connection = StreamConnection(
            self._transport, self._cond, self._unacked, self._settled
        )
        self._threads: list[threading.Thread] = []

    @property
    def writer_id(self) -> str:
        """The id the server knows this sender's batches by (see ``_connection``)."""
        return self._connection.writer_id

    @writer_id.setter
    def writer_id(self, writer_id: str) -> None:
        self._connection.writer_id = writer_id

    def _running(self) -> bool:
        return bool(self._threads)

    def _start(self) -> None:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("this trackline MetricSender is closed")
            if self._threads:
                return
            self._threads = [
                threading.Thread(target=self._batch_loop, name="trackline-batcher", daemon=True),
                threading.Thread(target=self._connection.run, name="trackline-stream", daemon=True),
            ]
            with self._cond:
                self._update_check_at()
            for t in self._threads:
                t.start()
            _fork.flush_at_process_exit(self)

    # Flushing and closing.
    def flush(self, timeout: float | None = None) -> None:
        """Waits until every point logged before the call is stored (or rejected).

        Raises ``TimeoutError`` when that takes longer than ``timeout`` seconds (the points
        stay queued), the first not-yet-raised rejection as ``BatchRejected``, and the stream
        error when the server refuses the stream itself (e.g. ``Unauthenticated``)."""
        if self._closed or not self._threads or self._pid != os.getpid():
            self._raise_rejection()
            return
        marker = FlushMarker()
        self._markers.append(marker)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while marker.target is None or self._unacked.acked < marker.target:
                err = self._connection.error
                if err is not None:
                    raise type(err)(err.message, err.code, err.reason, err.field_violations)
                wait = 1.0
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError(
                            f"trackline: {self._held()} metric points "
                            f"not yet stored by {self.uri} after {timeout} s"
                        )
                self._cond.wait(wait)
        self._raise_rejection()

    def _raise_rejection(self) -> None:
        with self._cond:
            first = self._unacked.take_rejection()
        if first is not None:
            raise first

    def close(self, timeout: float | None = 30.0) -> None:
        """Flushes (for up to ``timeout`` seconds; a warning says what could not be stored)
        and stops the threads and the channel. A closed sender refuses new points."""
        if self._closed:
            return
        if self._pid == os.getpid() and self._threads:
            try:
                self.flush(timeout)
            except TimeoutError as err:
                logger.warning("%s; they are lost", err)
            except TracklineError as err:
                logger.warning("trackline: metric points not stored: %s", err)
        with self._start_lock:
            self._closed = True
            self._check_at = 0
        self._wake.set()
        with self._cond:
            self._connection.close()
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)
        self._transport.close()

    # Around a fork, and at exit (see _fork).
    def _running_here(self) -> bool:
        return self._pid == os.getpid() and bool(self._threads) and not self._closed

    def _before_fork(self) -> None:
        if self._running_here():
            self._connection.before_fork()

    def _after_fork_in_parent(self) -> None:
        if self._running_here():
            self._connection.after_fork_in_parent()

    def _after_fork_in_child(self) -> None:
        """The parent's points, batches and threads are the parent's; the child starts empty
        under a new writer id and starts threads lazily (its transport opens a new channel)."""
        self._init_state()

    def _at_exit(self) -> None:
        if self._pid == os.getpid():
            self.close(timeout=30.0)

    # The batcher thread.
    def _batch_loop(self) -> None:
        while True:
            self._wake.wait(WAKE_SECONDS)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # a bug here must not stop the sender
                logger.exception("trackline: metric batcher failed")
            if self._closed:
                return

    def _drain(self) -> None:
        # Markers first: a marker counted here was queued after the points logged before it,
        # so those are among the n points counted next.
        pending = self._markers
        markers = [pending.popleft() for _ in range(len(pending))]
        buf = self._buf
        n = len(buf)
        if not n and not markers:
            return
        try:
            batches, errors = build_batches(itertools.starmap(buf.popleft, itertools.repeat((), n)))
        except Exception as bug:  # report the points as not stored; never leave flush waiting
            logger.exception("trackline: metric batcher failed")
            batches = []
            errors = [BatchRejected(0, "CLIENT_ERROR", repr(bug), run_id="", points=n)]
        with self._cond:
            unacked, connection = self._unacked, self._connection
            for body, run_id, points in batches:
                connection.send(unacked.add(body, run_id, points))
            for marker in markers:
                marker.target = unacked.seq
            for err in errors:
                unacked.reject(err)
            self._update_check_at()
            self._cond.notify_all()


__all__ = ["MetricSender"]
