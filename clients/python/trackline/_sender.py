"""Background streaming of metric points over ``IngestService.StreamMetrics``.

One ``MetricSender`` per process and server. ``log`` appends a tuple to a deque and returns;
two daemon threads do the rest:

* the *batcher* wakes every 50 ms, or at once when 10,000 points are pending, drains the
  deque, groups the points per (run, key, rank) and packs them into numbered batches (one
  run per batch, at most 200,000 points), each ONE ``SeriesBlock``: the points of all its
  series in shared columns, built with C-level passes over the drained points (Python work
  per point only when their keys follow no fixed cycle; see ``_build_batches``). It keeps
  each batch in an ordered "unacked" list and, when a stream is open, queues it for
  sending. ``flush`` queues a marker beside the points, which the batcher settles with the
  last seq it assigned;
* the *connection* thread opens the stream, sends the handshake (writer id and key, seq 0),
  and on the server's answer (the writer's stored high-water seq) drops the batches the
  server already has and queues the rest, in order, before any new batch. It then reads acks,
  dropping every batch at or below ``acked_seq`` and recording rejections. When the stream
  fails it reconnects with jittered exponential backoff (0.05 s doubling to 5 s). The server
  skips batches at or below its high-water mark, so resending is exactly-once.

A writer is its id plus a random key, both chosen once (and anew in a forked child); the
server keeps the writer's batches to the first key it saw with the id. Should the id be
taken by another writer (WRITER_ID_TAKEN), the sender goes on under a fresh id and key
(``_new_identity``).

gRPC's own request thread pulls the queued batches; when the server is busy it stops reading
and that thread waits, never the caller of ``log``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import operator
import os
import queue
import random
import re
import socket
import struct
import sys
import threading
import time
import uuid
import weakref
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from trackline.v1 import ingest_pb2 as ipb

from ._client import CHANNEL_OPTIONS, clean_token
from ._exceptions import BatchRejected, TracklineError, from_rpc_error
from ._uri import open_channel, resolve_uri

logger = logging.getLogger("trackline")

WAKE_POINTS = 10_000  # pending points that wake the batcher before its timer
WAKE_SECONDS = 0.05
MAX_BATCH_POINTS = 200_000
MAX_BATCH_BYTES = 16 * 1024 * 1024  # estimated, for batches of many short series
DEFAULT_MAX_BUFFERED_POINTS = 10_000_000
MAX_KEY_LENGTH = 500  # as the server's limits.MAX_KEY_LENGTH
BACKOFF_START, BACKOFF_MAX = 0.05, 5.0
FORK_QUIESCE_SECONDS = 2.0  # how long a fork waits for the stream to leave gRPC
# Stream errors that retrying will not fix by itself: flush raises them instead of waiting.
_FATAL_CODES = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INVALID_ARGUMENT,
}
_INT64 = (-(2**63), 2**63)
_INT32 = (-(2**31), 2**31)

_time_ns = time.time_ns
_STREAM_METHOD = "/trackline.v1.IngestService/StreamMetrics"
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")  # as the server's store._CONTROL_CHARS
_KNOWN_KEYS: set[str] = set()  # keys found valid: most drains repeat the same keys
_MAX_KNOWN_KEYS = 100_000


class _FlushMarker:
    """Queued by ``flush`` after the points logged before it; the batcher sets ``target`` to
    the last seq it assigned when it takes the marker, so every point logged before it is in a
    batch <= target."""

    __slots__ = ("target",)

    def __init__(self) -> None:
        self.target: int | None = None


def _env_rank() -> int:
    try:
        return int(os.environ.get("RANK") or 0)
    except ValueError:
        return 0


def _env_max_buffered() -> int:
    raw = os.environ.get("TRACKLINE_MAX_BUFFERED_POINTS")
    return int(raw) if raw else DEFAULT_MAX_BUFFERED_POINTS


def _new_writer_id() -> str:
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class MetricSender:
    """Streams metric points to one server from a background thread, exactly once.

    ``log`` only appends to an in-process buffer (well under a microsecond). Points are
    stored in the order of their batches; ``flush`` waits until everything logged before it
    is stored and raises the first batch the server rejected as ``BatchRejected`` (rejected
    points are also logged on the ``trackline`` logger when the rejection arrives; they are
    never retried). Server restarts and network failures are ridden out by reconnecting and
    resending what the server has not acknowledged: nothing is lost or stored twice.

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
    ) -> None:
        self.target = resolve_uri(uri)
        self.uri = str(self.target)
        self.token = clean_token(token if token is not None else os.environ.get("TRACKLINE_TOKEN"))
        self.max_buffered_points = (
            max_buffered_points if max_buffered_points is not None else _env_max_buffered()
        )
        if self.max_buffered_points < 1:
            raise ValueError("max_buffered_points must be positive")
        self._closed = False
        self._init_state()
        _SENDERS.add(self)

    def _init_state(self) -> None:
        """Fresh per-process state (constructor, and the child after ``fork``)."""
        self._pid = os.getpid()
        self.writer_id = _new_writer_id()
        self._writer_key = os.urandom(32)  # proves to the server that writer_id is ours
        self._rank = _env_rank()
        self._buf: deque[tuple[Any, ...]] = deque()
        # Flush markers: apart from the points, so that a drain never has to look for them.
        self._markers: deque[_FlushMarker] = deque()
        # Points in the buffer at which log() takes the slow path: 0 until the threads run.
        self._check_at = 0
        self._start_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())  # guards everything below
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._seq = 0  # last seq assigned
        self._acked = 0  # every batch <= this is settled
        # Seqs on the wire are ``seq - _base``: 0 until the sender changes its identity, then
        # the last seq settled under the old one, so the new writer id's batches start at 1.
        self._base = 0
        # (seq, encoded StreamMetricsRequest, run_id, points), in seq order without gaps
        self._unacked: deque[tuple[int, bytes, str, int]] = deque()
        self._unacked_points = 0
        self._rejections: list[BatchRejected] = []  # not yet raised by flush
        self._conn_error: TracklineError | None = None  # last stream error, if not transient
        self._live: queue.SimpleQueue[Any] | None = None  # request queue of the open stream
        self._call: Any = None
        self._forking = False  # a fork is being prepared: no stream may be open
        self._streaming = False  # the connection thread is in a call (in gRPC)
        # The threads gRPC started for the last stream (it ends them once the call is over).
        self._grpc_threads: list[threading.Thread] = []
        self._blocked = False  # a log() call is waiting for room (one warning per episode)
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._threads: list[threading.Thread] = []

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

    def _slow_path(self) -> None:
        if not self._threads or self._closed:
            self._start()
        if not self._wake.is_set():
            self._wake.set()
        if len(self._buf) + self._unacked_points >= self.max_buffered_points:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        with self._cond:
            while (
                len(self._buf) + self._unacked_points >= self.max_buffered_points
                and not self._closing.is_set()
            ):
                if not self._blocked:
                    self._blocked = True
                    logger.warning(
                        "trackline: %d metric points are waiting for the server at %s "
                        "(unreachable or slower than the logging); logging is blocked until "
                        "it takes them (max_buffered_points=%d)",
                        len(self._buf) + self._unacked_points,
                        self.uri,
                        self.max_buffered_points,
                    )
                self._wake.set()
                self._cond.wait(1.0)

    def _start(self) -> None:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("this trackline MetricSender is closed")
            if self._threads:
                return
            self._threads = [
                threading.Thread(target=self._batch_loop, name="trackline-batcher", daemon=True),
                threading.Thread(
                    target=self._connection_loop, name="trackline-stream", daemon=True
                ),
            ]
            with self._cond:
                self._update_check_at()
            for t in self._threads:
                t.start()
            _flush_at_process_exit(self)

    def _update_check_at(self) -> None:  # under self._cond
        room = self.max_buffered_points - self._unacked_points
        self._check_at = max(1, min(WAKE_POINTS, room))

    # Flushing and closing.
    def flush(self, timeout: float | None = None) -> None:
        """Waits until every point logged before the call is stored (or rejected).

        Raises ``TimeoutError`` when that takes longer than ``timeout`` seconds (the points
        stay queued), the first not-yet-raised rejection as ``BatchRejected``, and the stream
        error when the server refuses the stream itself (e.g. ``Unauthenticated``)."""
        if self._closed or not self._threads or self._pid != os.getpid():
            self._raise_rejection()
            return
        marker = _FlushMarker()
        self._markers.append(marker)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while marker.target is None or self._acked < marker.target:
                if self._conn_error is not None:
                    err = self._conn_error
                    raise type(err)(err.message, err.code, err.reason, err.field_violations)
                wait = 1.0
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError(
                            f"trackline: {len(self._buf) + self._unacked_points} metric points "
                            f"not yet stored by {self.uri} after {timeout} s"
                        )
                self._cond.wait(wait)
        self._raise_rejection()

    def _raise_rejection(self) -> None:
        with self._cond:
            if not self._rejections:
                return
            first = self._rejections[0]
            self._rejections.clear()
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
        self._closing.set()
        self._wake.set()
        with self._cond:
            self._end_stream()
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(5)
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's points, batches, threads and channel are the
        parent's; the child starts empty under a new writer id and starts threads lazily."""
        if self._channel is not None:
            _INHERITED.append(self._channel)  # never touched (nor collected) in the child
        self._init_state()

    # The batcher thread.
    def _batch_loop(self) -> None:
        while True:
            self._wake.wait(WAKE_SECONDS)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # a bug here must not stop the sender
                logger.exception("trackline: metric batcher failed")
            if self._closing.is_set():
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
            batches, errors = _build_batches(
                itertools.starmap(buf.popleft, itertools.repeat((), n))
            )
        except Exception as bug:  # report the points as not stored; never leave flush waiting
            logger.exception("trackline: metric batcher failed")
            batches = []
            errors = [BatchRejected(0, "CLIENT_ERROR", repr(bug), run_id="", points=n)]
        with self._cond:
            live = self._live
            for body, run_id, points in batches:
                self._seq += 1
                msg = encode_request(self._seq - self._base, body)
                self._unacked.append((self._seq, msg, run_id, points))
                self._unacked_points += points
                if live is not None:
                    live.put(msg)
            for marker in markers:
                marker.target = self._seq
            for err in errors:
                self._reject(err)
            self._update_check_at()
            self._cond.notify_all()

    # The connection thread.
    def _get_stub(self) -> Any:
        if self._stub is None:
            self._channel = open_channel(
                self.target,
                [
                    *CHANNEL_OPTIONS,
                    # Reconnect about as eagerly as our own backoff (gRPC's default max is 120 s).
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", int(BACKOFF_MAX * 1000)),
                    # Pings find a connection that died without a reset (a partition, a
                    # frozen server); the server admits one ping per 10 s (app.py).
                    ("grpc.keepalive_time_ms", 20_000),
                    ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.keepalive_permit_without_calls", 1),
                ],
            )
            # Requests go out pre-encoded (see _build_batches), so no request serializer.
            self._stub = self._channel.stream_stream(
                _STREAM_METHOD,
                request_serializer=None,
                response_deserializer=ipb.StreamMetricsResponse.FromString,
            )
        return self._stub

    def _connection_loop(self) -> None:
        delay = BACKOFF_START
        down_since: float | None = None
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
        while not self._closing.is_set():
            with self._cond:
                self._cond.wait_for(lambda: not self._forking or self._closing.is_set())
                if self._closing.is_set():
                    return
                self._streaming = True
            requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
            with self._cond:
                hello = ipb.StreamMetricsRequest(
                    writer_id=self.writer_id, writer_key=self._writer_key, seq=0
                )
            requests.put(hello.SerializeToString())
            error: BaseException | None = None
            renamed = False  # the sender took a new identity: reconnect at once
            try:
                before = set(threading.enumerate())
                call = self._get_stub()(_drain_queue(requests), metadata=metadata)
                with self._cond:
                    self._grpc_threads = _grpc_threads_since(before)
                    self._call = call
                    if self._closing.is_set() or self._forking:
                        call.cancel()
                first = True
                for resp in call:
                    if first:
                        first = False
                        if not self._on_handshake(resp, requests):
                            renamed = True
                            call.cancel()
                            break
                        delay = BACKOFF_START
                        if down_since is not None:
                            logger.warning(
                                "trackline: reconnected to %s after %.1f s",
                                self.uri,
                                time.monotonic() - down_since,
                            )
                            down_since = None
                    else:
                        self._on_ack(resp)
            except grpc.RpcError as err:
                error = err
                if first and from_rpc_error(err).reason == "WRITER_ID_TAKEN":
                    # Another writer holds the id (it chose the same one). None of our
                    # batches was ever stored under it: the server ties a writer id to the
                    # first key it saw, ours is fixed for the sender's life, and a handshake
                    # with our key would have been refused in the same way before any of our
                    # batches could commit. So all our unacked batches go to a new id.
                    with self._cond:
                        logger.warning(
                            "trackline: writer id %s is taken by another writer; going on as a"
                            " new writer",
                            self.writer_id,
                        )
                        self._new_identity()
                    renamed = True
            except Exception as err:  # a bug here must not stop the sender
                logger.exception("trackline: metric stream failed")
                error = err
            finally:
                with self._cond:
                    if self._live is requests:
                        self._end_stream()
                    self._call = None
                    self._streaming = False
                    forking = self._forking
                    self._cond.notify_all()
                requests.put(None)
            if self._closing.is_set():
                return
            if forking or renamed:  # not ended by a failure: reopen at once
                continue
            if isinstance(error, grpc.RpcError):
                code = error.code()  # type: ignore[attr-defined]
                if code in _FATAL_CODES:
                    with self._cond:
                        self._conn_error = from_rpc_error(error)
                        self._cond.notify_all()
                    logger.error("trackline: the metric stream was refused: %s", error)
            if down_since is None:
                down_since = time.monotonic()
                logger.warning(
                    "trackline: metric stream to %s interrupted (%s); reconnecting",
                    self.uri,
                    _describe(error),
                )
            self._closing.wait(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)

    def _before_fork(self) -> None:
        """Ends the stream and waits (at most FORK_QUIESCE_SECONDS) until the connection
        thread has left gRPC; it opens no new one until ``_after_fork_in_parent``."""
        deadline = time.monotonic() + FORK_QUIESCE_SECONDS
        with self._cond:
            self._forking = True
            self._end_stream()
            left = self._cond.wait_for(lambda: not self._streaming, FORK_QUIESCE_SECONDS)
            threads = self._grpc_threads
        # gRPC's own threads of the call (its poller, the request reader) end just after it.
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if not left or any(t.is_alive() for t in threads):
            logger.warning("trackline: the metric stream was still open at fork")

    def _after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def _end_stream(self) -> None:  # under self._cond
        if self._live is not None:
            self._live.put(None)
            self._live = None
        if self._call is not None:
            self._call.cancel()

    def _on_handshake(self, resp: Any, requests: queue.SimpleQueue[Any]) -> bool:
        """Settles what the server has stored and queues the rest for sending; False when the
        server's mark cannot be ours, and the sender took a new identity instead."""
        with self._cond:
            stored = resp.acked_seq + self._base
            if not self._acked <= stored <= self._seq:
                # Above our last seq: batches we never sent (ours would then be skipped as
                # resends). Below what it acknowledged: the server's store lost them (replaced
                # or restored). Either way our unacked batches are not stored under this id.
                if stored < self._acked:
                    logger.error(
                        "trackline: the server no longer has batches %d to %d of writer %s,"
                        " which it acknowledged (was its store replaced or restored?); the"
                        " unacknowledged points go on under a new writer id",
                        stored - self._base + 1,
                        self._acked - self._base,
                        self.writer_id,
                    )
                else:
                    logger.error(
                        "trackline: the server has batches of writer %s beyond the %d sent;"
                        " the unacknowledged points go on under a new writer id",
                        self.writer_id,
                        self._seq - self._base,
                    )
                self._new_identity()
                return False
            self._conn_error = None
            self._settle(resp)
            for _seq, msg, _run, _n in self._unacked:
                requests.put(msg)
            self._live = requests
            return True

    def _new_identity(self) -> None:  # under self._cond, with no stream open
        """Goes on as a new writer (id and key): the unacked batches are renumbered from 1 on
        the wire; seqs in the sender (flush targets, acks) are unchanged."""
        self.writer_id = _new_writer_id()
        self._writer_key = os.urandom(32)
        self._base = self._unacked[0][0] - 1 if self._unacked else self._seq
        self._acked = max(self._acked, self._base)
        self._unacked = deque(
            (seq, encode_request(seq - self._base, _body(msg)), run_id, points)
            for seq, msg, run_id, points in self._unacked
        )

    def _on_ack(self, resp: Any) -> None:
        with self._cond:
            self._settle(resp)

    def _settle(self, resp: Any) -> None:  # under self._cond
        unacked = self._unacked
        for rej in resp.rejections:
            seq = rej.seq + self._base
            if not unacked or not unacked[0][0] <= seq <= unacked[-1][0]:
                continue  # not ours to report (already settled)
            _seq, _msg, run_id, points = unacked[seq - unacked[0][0]]
            self._reject(BatchRejected(seq, rej.reason, rej.message, run_id=run_id, points=points))
        acked = resp.acked_seq + self._base
        while unacked and unacked[0][0] <= acked:
            self._unacked_points -= unacked.popleft()[3]
        self._acked = max(self._acked, acked)
        self._update_check_at()
        if self._blocked and len(self._buf) + self._unacked_points < self.max_buffered_points:
            self._blocked = False
            logger.warning("trackline: the server takes metric points again; logging resumed")
        self._cond.notify_all()

    def _reject(self, err: BatchRejected) -> None:  # under self._cond
        logger.error(
            "trackline: %d metric points of run %s were rejected (batch %d): %s: %s",
            err.points,
            err.run_id,
            err.seq,
            err.reason,
            err.message,
        )
        self._rejections.append(err)


def _drain_queue(requests: queue.SimpleQueue[Any]) -> Iterator[Any]:
    """The request iterator of one stream: queued messages until ``None``."""
    while True:
        msg = requests.get()
        if msg is None:
            return
        yield msg


def _describe(error: BaseException | None) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
    return "the server ended it" if error is None else repr(error)


_Problem = tuple[str, str]  # (reason, message) of a point the server would refuse


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _run_problem(run_id: Any) -> _Problem | None:
    if not isinstance(run_id, str) or not run_id:
        return "RUN_NOT_FOUND", f"run id must be a non-empty string, not {run_id!r}"
    if not _utf8(run_id):
        return "RUN_NOT_FOUND", f"run id {run_id!r} is not valid Unicode"
    return None


def _key_problem(key: Any) -> _Problem | None:
    """Why the server would refuse ``key``, or None (and the key is remembered as valid)."""
    if not isinstance(key, str) or not key:
        return "INVALID_KEY", f"key must be a non-empty string, not {key!r}"
    if len(key) > MAX_KEY_LENGTH:
        return "INVALID_KEY", f"key is longer than {MAX_KEY_LENGTH} characters"
    if _CONTROL_CHARS.search(key):
        return "INVALID_KEY", f"key {key!r} contains a control character"
    if not _utf8(key):
        return "INVALID_KEY", f"key {key!r} is not valid Unicode"
    if type(key) is str:
        if len(_KNOWN_KEYS) >= _MAX_KNOWN_KEYS:
            _KNOWN_KEYS.clear()
        _KNOWN_KEYS.add(key)
    return None


def _rank_problem(rank: Any) -> _Problem | None:
    try:
        if _INT32[0] <= operator.index(rank) < _INT32[1]:
            return None
    except TypeError:
        pass
    return "INVALID_RANK", f"rank must be an int32, not {rank!r}"


def encode_request(seq: int, body: bytes) -> bytes:
    """A StreamMetricsRequest from its seq and its encoded ``block`` field."""
    return b"\x10" + _varint(seq) + body


def _body(msg: bytes) -> bytes:
    """The ``block`` field of an ``encode_request`` message (what follows its seq)."""
    pos = 1
    while msg[pos] & 0x80:
        pos += 1
    return msg[pos + 1 :]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# (run id, keys, ranks, lengths) of the series of one run, in the order of their points;
# ranks is empty when every rank is 0.
_RunSeries = tuple[str, list[str], list[int], list[int]]
_Batch = tuple[bytes, str, int]  # encoded ``block`` field, run id, points


def _build_batches(
    points: Iterable[tuple[Any, ...]],
) -> tuple[list[_Batch], list[BatchRejected]]:
    """Packs drained point tuples into batches: the encoded ``block`` field of a
    StreamMetricsRequest (the seq is added when it is assigned), its run and its number of
    points; one run per batch, at most MAX_BATCH_POINTS points. Points the server would
    refuse (bad run id, key, rank, step or timestamp) come back as errors instead of
    spoiling a batch.

    This runs under the GIL next to the training loop, so it works on whole columns with
    C-level calls (extend, slicing, count, itemgetter, struct) and does Python work per
    point only for a drain of several runs or ranks, or whose keys follow no fixed cycle.
    The point columns go straight into packed bytes and onto the wire; only the per-series
    names and lengths go through protobuf, one ``extend`` per column."""
    # run, key, rank, step, timestamp, value of every point, one after the other
    flat = _concat(points)
    errors: list[BatchRejected] = []
    if not flat:
        return [], errors
    try:
        return _encode_points(flat, errors), errors
    except (TypeError, OverflowError, ValueError, struct.error):
        # A step or timestamp that is no int64, or a name that cannot be hashed (rare): set
        # those points aside and pack the rest.
        errors = []
        good = _valid_points(zip(*[iter(flat)] * 6, strict=True), errors)
        flat = _concat(good)
        return (_encode_points(flat, errors) if flat else []), errors


def _encode_points(flat: list[Any], errors: list[BatchRejected]) -> list[_Batch]:
    n = len(flat) // 6
    runs, keys, ranks = flat[0::6], flat[1::6], flat[2::6]
    columns: _Columns = [flat[3::6], flat[4::6], flat[5::6]]
    run0, rank0 = runs[0], ranks[0]
    per_run: list[_RunSeries]
    if runs.count(run0) == n and ranks.count(rank0) == n:  # the usual drain: one run and rank
        problem = _run_problem(run0) or _rank_problem(rank0)
        if problem is not None:
            errors.append(BatchRejected(0, *problem, run_id=str(run0), points=n))
            return []
        grouped = _group_cycle(keys, columns) or _group_keys(keys, columns, run0, errors)
        names, lengths, columns = grouped
        r = operator.index(rank0)
        per_run = [(run0, names, [r] * len(names) if r else [], lengths)] if names else []
    else:
        per_run, columns = _group_series(runs, keys, ranks, columns, errors)
    if not per_run:
        return []
    packed = (_packed("q", columns[0]), _packed("q", columns[1]), _packed("d", columns[2]))
    batches: list[_Batch] = []
    lo = 0
    for run in per_run:
        lo = _pack_run(run, lo, packed, batches)
    return batches


_Columns = list[Sequence[Any]]  # steps, timestamps, values
_Grouped = tuple[list[str], list[int], _Columns]  # names, lengths, columns


def _group_cycle(keys: list[Any], columns: _Columns) -> _Grouped | None:
    """Groups the points of one run by key when the keys repeat a fixed cycle of distinct,
    valid keys: one key, or the metrics of a training step logged in the same order every
    step (the drain may start and end mid-cycle). Then series j is every period-th point
    from point j, so grouping takes slicing per series and no work per point. None for a
    drain of any other shape."""
    n = len(keys)
    try:
        period = keys.index(keys[0], 1)
    except ValueError:
        period = n  # the first key only once: a cycle only if every key is distinct
    if period == 1:
        if keys.count(keys[0]) != n:
            return None
    elif period < n and keys[period:] != keys[: n - period]:
        return None
    names = keys[:period]
    if period > 1 and len(set(names)) != period:
        return None
    if not _KNOWN_KEYS.issuperset(names):
        if any(_key_problem(key) for key in set(names) - _KNOWN_KEYS):
            return None  # _group_keys reports them
    if period == 1:
        return names, [n], columns
    if period == n:
        return names, [1] * n, columns
    full, rest = divmod(n, period)
    lengths = [full + 1] * rest + [full] * (period - rest)
    if period * 16 <= n:  # few series: a slice per series and column
        return names, lengths, [_concat([c[j::period] for j in range(period)]) for c in columns]
    order = _concat([range(j, n, period) for j in range(period)])
    return names, lengths, _pick(columns, order)


def _group_keys(
    keys: list[Any], columns: _Columns, run_id: str, errors: list[BatchRejected]
) -> _Grouped:
    """Groups the points of one run by key (any drain), leaving out invalid keys."""
    groups: defaultdict[Any, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    names, parts = [], []
    for key, indices in groups.items():
        problem = None if key in _KNOWN_KEYS else _key_problem(key)
        if problem is None:
            names.append(key)
            parts.append(indices)
        else:
            errors.append(BatchRejected(0, *problem, run_id=run_id, points=len(indices)))
    if len(names) == len(groups) == 1:
        return names, [len(keys)], columns
    return names, list(map(len, parts)), _pick(columns, _concat(parts))


def _group_series(
    runs: list[Any],
    keys: list[Any],
    ranks: list[Any],
    columns: _Columns,
    errors: list[BatchRejected],
) -> tuple[list[_RunSeries], _Columns]:
    """Groups the points of a drain of several runs or ranks per (run, key, rank), the
    series of a run together, leaving out invalid series."""
    groups: defaultdict[tuple[Any, Any, Any], list[int]] = defaultdict(list)
    for i, s in enumerate(zip(runs, keys, ranks, strict=True)):
        groups[s].append(i)
    by_run: dict[str, list[tuple[str, int, list[int]]]] = {}
    run_problems: dict[Any, _Problem | None] = {}
    for (run_id, key, rank), indices in groups.items():
        if run_id in run_problems:
            problem = run_problems[run_id]
        else:
            problem = run_problems[run_id] = _run_problem(run_id)
        if problem is None and key not in _KNOWN_KEYS:
            problem = _key_problem(key)
        if problem is None:
            problem = _rank_problem(rank)
        if problem is None:
            by_run.setdefault(run_id, []).append((key, operator.index(rank), indices))
        else:
            errors.append(BatchRejected(0, *problem, run_id=str(run_id), points=len(indices)))
    per_run: list[_RunSeries] = []
    parts: list[list[int]] = []
    for run_id, series in by_run.items():
        names = [s[0] for s in series]
        per_run.append((run_id, names, [s[1] for s in series], [len(s[2]) for s in series]))
        parts += (s[2] for s in series)
    return per_run, _pick(columns, _concat(parts)) if parts else columns


def _concat(parts: Iterable[Iterable[Any]]) -> list[Any]:
    """The entries of ``parts``, one part after the other. ``list.extend`` per part copies a
    tuple or list at once: about three times faster than ``itertools.chain``."""
    out: list[Any] = []
    deque(map(out.extend, parts), maxlen=0)
    return out


def _pick(columns: _Columns, order: list[int]) -> _Columns:
    """The entries ``order`` of each column, in that order."""
    if not order:
        return [[] for _ in columns]
    if len(order) == 1:
        return [[c[order[0]]] for c in columns]
    pick = operator.itemgetter(*order)
    return [pick(c) for c in columns]


def _packed(typecode: str, column: Sequence[Any]) -> memoryview:
    """A packed little-endian column of int64 (``q``) or double (``d``) (raises struct.error
    for a value that is no int64). ``struct`` converts faster than ``array``."""
    return memoryview(struct.pack(f"<{len(column)}{typecode}", *column))


def _pack_run(run: _RunSeries, lo: int, columns: tuple[memoryview, ...], out: list[_Batch]) -> int:
    """Appends the batches of one run's series, whose points start at point ``lo`` of
    ``columns``, to ``out``; returns where the next run's points start."""
    run_id, keys, ranks, lengths = run
    total = sum(lengths)
    per_series = len(run_id) + 16  # estimated bytes of a series' run id, key and length
    size = 24 * total + sum(map(len, keys)) + per_series * len(keys)
    if total <= MAX_BATCH_POINTS and size <= MAX_BATCH_BYTES:  # the usual case: one batch
        out.append((_encode_block(run_id, keys, ranks, lengths, lo, lo + total, columns),
                    run_id, total))  # fmt: skip
        return lo + total
    # Too many points or bytes for one batch: fill batches in turn, cutting series at the
    # batch ends.
    b_keys: list[str] = []
    b_ranks: list[int] = []
    b_lengths: list[int] = []
    start, n_batch, size_batch = lo, 0, 0
    for i, key in enumerate(keys):
        rank = ranks[i] if ranks else 0
        left = lengths[i]
        est = len(key) + per_series
        while left:
            room = min(MAX_BATCH_POINTS - n_batch, (MAX_BATCH_BYTES - size_batch - est) // 24)
            if room < 1 and b_lengths:
                block = _encode_block(
                    run_id, b_keys, b_ranks, b_lengths, start, start + n_batch, columns
                )
                out.append((block, run_id, n_batch))
                start += n_batch
                b_keys, b_ranks, b_lengths, n_batch, size_batch = [], [], [], 0, 0
                continue
            take = min(left, max(room, 1))
            b_keys.append(key)
            b_ranks.append(rank)
            b_lengths.append(take)
            n_batch += take
            size_batch += 24 * take + est
            left -= take
    if b_lengths:
        block = _encode_block(run_id, b_keys, b_ranks, b_lengths, start, start + n_batch, columns)
        out.append((block, run_id, n_batch))
    return lo + total


_COLUMN_TAGS = (b"\x2a", b"\x32", b"\x3a")  # SeriesBlock steps (5), timestamps (6), values (7)


def _encode_block(
    run_id: str,
    keys: list[str],
    ranks: list[int],
    lengths: list[int],
    lo: int,
    hi: int,
    columns: tuple[memoryview, ...],
) -> bytes:
    """The ``block`` field (4) of a StreamMetricsRequest: the series' names and lengths
    through protobuf (one ``extend`` per column), then points ``lo`` to ``hi`` of the packed
    columns as they are (protobuf reads the fields in any order)."""
    names = ipb.SeriesBlock()
    names.run_ids.extend([run_id] * len(keys))
    names.keys.extend(keys)
    if any(ranks):
        names.ranks.extend(ranks)
    names.lengths.extend(lengths)
    head = names.SerializeToString()
    parts: list[bytes | memoryview] = [b"", head]
    size = len(head)
    for tag, column in zip(_COLUMN_TAGS, columns, strict=True):
        piece = column[8 * lo : 8 * hi]
        field = tag + _varint(len(piece))
        parts += (field, piece)
        size += len(field) + len(piece)
    parts[0] = b"\x22" + _varint(size)
    return b"".join(parts)


def _valid_points(
    items: Iterable[tuple[Any, ...]], errors: list[BatchRejected]
) -> list[tuple[Any, ...]]:
    """The points whose names can be hashed and whose step and timestamp are int64s; the
    others are reported, one error per run and problem."""
    good = []
    bad_names: Counter[tuple[str, str, str]] = Counter()
    bad_points: Counter[tuple[str, str]] = Counter()
    for run_id, key, rank, step, stamp, value in items:
        try:
            hash((run_id, key, rank))
        except TypeError:
            problem = _run_problem(run_id) or _key_problem(key) or _rank_problem(rank)
            reason, message = problem or ("INVALID_KEY", f"key {key!r} cannot be hashed")
            bad_names[str(run_id), reason, message] += 1
            continue
        try:
            step, stamp = operator.index(step), operator.index(stamp)
            ok = _INT64[0] <= step < _INT64[1] and _INT64[0] <= stamp < _INT64[1]
        except TypeError:
            ok = False
        if ok:
            good.append((run_id, key, rank, step, stamp, value))
        else:
            bad_points[str(run_id), repr(key)] += 1
    for (run_id, reason, message), count in bad_names.items():
        errors.append(BatchRejected(0, reason, message, run_id=run_id, points=count))
    for (run_id, key), count in bad_points.items():
        message = f"{count} points of {key} have a step or timestamp that is not an int64"
        errors.append(BatchRejected(0, "INVALID_POINT", message, run_id=run_id, points=count))
    return good


_SENDERS: weakref.WeakSet[MetricSender] = weakref.WeakSet()
_INHERITED: list[Any] = []  # channels a forked child got from its parent


def _flush_at_process_exit(sender: MetricSender) -> None:
    """A multiprocessing child ends with ``os._exit``, skipping atexit; its own exit hooks
    (``multiprocessing.util.Finalize``) still run, so the sender flushes there."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    from multiprocessing import util

    if multiprocessing.parent_process() is not None:
        util.Finalize(sender, sender.close, kwargs={"timeout": 30.0}, exitpriority=10)


def _grpc_threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """The threads gRPC started since ``before``: its Python threads run a function named
    ``_run`` (Python names such a thread "Thread-N (_run)")."""
    return [t for t in threading.enumerate() if t not in before and t.name.endswith("(_run)")]


def _running_senders() -> list[MetricSender]:
    """This process's senders whose threads run."""
    return [s for s in list(_SENDERS) if s._pid == os.getpid() and s._threads and not s._closed]


def _before_fork() -> None:
    for sender in _running_senders():
        sender._before_fork()


def _after_fork_in_parent() -> None:
    for sender in _running_senders():
        sender._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for sender in list(_SENDERS):
        sender._reset_after_fork()


def _close_at_exit() -> None:
    for sender in list(_SENDERS):
        if sender._pid == os.getpid():
            sender.close(timeout=30.0)


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
atexit.register(_close_at_exit)

__all__ = ["MetricSender"]
