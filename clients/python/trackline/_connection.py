"""The metric stream of one sender: its connection thread, handshake, acks and reconnects.

The connection thread opens the stream, sends the handshake (writer id and key, seq 0), and
on the server's answer (the writer's stored high-water seq) settles the batches the server
already has and queues the rest, in order, before any new batch. It then reads acks, settling
every batch at or below ``acked_seq`` and recording rejections. When the stream fails it
reconnects with jittered exponential backoff (0.05 s doubling to 5 s). The server skips
batches at or below its high-water mark, so resending is exactly-once.

A writer is its id plus a random key, both chosen once (and anew in a forked child); the
server keeps the writer's batches to the first key it saw with the id. Should the id be
taken by another writer (WRITER_ID_TAKEN), the sender goes on under a fresh id and key.

gRPC's own request thread pulls the queued batches; when the server is busy it stops reading
and that thread waits, never the caller of ``log``.
"""

from __future__ import annotations

import enum
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from trackline.v1 import ingest_pb2 as ipb

from ._exceptions import TracklineError, from_rpc_error
from ._transport import Transport
from ._unacked import UnackedBatches
from ._wire import encode_hello

logger = logging.getLogger("trackline")

BACKOFF_START, BACKOFF_MAX = 0.05, 5.0
FORK_QUIESCE_SECONDS = 2.0  # how long a fork waits for the stream to leave gRPC
STREAM_METHOD = "/trackline.v1.IngestService/StreamMetrics"
STREAM_CHANNEL_OPTIONS = (
    # Reconnect about as eagerly as our own backoff (gRPC's default max is 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(BACKOFF_MAX * 1000)),
    # Pings find a connection that died without a reset (a partition, a frozen server); the
    # server admits one ping per 10 s (app.py).
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)
# Stream errors that retrying will not fix by itself: flush raises them instead of waiting.
_FATAL_CODES = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INVALID_ARGUMENT,
}


class StreamState(enum.Enum):
    """Where the stream of a sender is. CLOSED is final; QUIESCING and FORKING last from
    ``before_fork`` to ``after_fork_in_parent``."""

    IDLE = "no stream is open; the connection thread opens one (after its backoff)"
    CONNECTING = "a stream is open and its handshake not answered yet"
    STREAMING = "the handshake is answered: batches go out as they are drained"
    QUIESCING = "a fork is coming: the stream is ending and the thread leaving gRPC"
    FORKING = "a fork is coming and no stream is open: none may open until it is over"
    CLOSED = "the sender is closed: the connection thread ends"


def new_writer_id() -> str:
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class StreamConnection:
    """The stream of one sender to its server. ``cond`` is the sender's condition, which
    guards ``unacked`` and this connection's state; ``settled`` is called under it whenever
    acks settled batches."""

    def __init__(
        self,
        transport: Transport,
        cond: threading.Condition,
        unacked: UnackedBatches,
        settled: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._cond = cond
        self._unacked = unacked
        self._settled = settled
        self.state = StreamState.IDLE
        self.writer_id = new_writer_id()
        self._writer_key = os.urandom(32)  # proves to the server that writer_id is ours
        self.error: TracklineError | None = None  # last stream error, if not transient
        self._requests: queue.SimpleQueue[bytes | None] | None = None  # of the open stream
        self._call: Any = None
        # The threads gRPC started for the last stream (it ends them once the call is over).
        self._grpc_threads: list[threading.Thread] = []

    def send(self, msg: bytes) -> None:  # under cond
        """Queues a new batch on the stream, when one is streaming (otherwise the next
        handshake resends it with the other unacknowledged batches)."""
        if self.state is StreamState.STREAMING:
            assert self._requests is not None
            self._requests.put(msg)

    def close(self) -> None:  # under cond
        self.state = StreamState.CLOSED
        self._end_stream()

    def run(self) -> None:
        """The connection thread: streams until the sender is closed."""
        delay = BACKOFF_START
        down_since: float | None = None
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self.state not in (StreamState.FORKING, StreamState.QUIESCING)
                )
                if self.state is StreamState.CLOSED:
                    return
                self.state = StreamState.CONNECTING
                hello = encode_hello(self.writer_id, self._writer_key)
                requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
                self._requests = requests
            requests.put(hello)
            answered = False  # the server answered the handshake
            again = False  # not ended by a failure: reopen at once
            error: BaseException | None = None
            try:
                before = set(threading.enumerate())
                call = self._open(requests)
                with self._cond:
                    self._grpc_threads = _grpc_threads_since(before)
                    self._call = call
                    if self.state in (StreamState.QUIESCING, StreamState.CLOSED):
                        call.cancel()
                for resp in call:
                    if answered:
                        with self._cond:
                            self._settle(resp)
                        continue
                    answered = True
                    if not self._on_handshake(resp, requests):
                        again = True
                        call.cancel()
                        break
                    delay = BACKOFF_START
                    if down_since is not None:
                        logger.warning(
                            "trackline: reconnected to %s after %.1f s",
                            self._transport.uri,
                            time.monotonic() - down_since,
                        )
                        down_since = None
            except grpc.RpcError as err:
                error = err
                if not answered and from_rpc_error(err).reason == "WRITER_ID_TAKEN":
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
                    again = True
            except Exception as err:  # a bug here must not stop the sender
                logger.exception("trackline: metric stream failed")
                error = err
            finally:
                with self._cond:
                    if self._requests is requests:
                        self._end_stream()
                    self._call = None
                    if self.state is StreamState.QUIESCING:
                        self.state = StreamState.FORKING
                    elif self.state is not StreamState.CLOSED:
                        self.state = StreamState.IDLE
                    state = self.state
                    self._cond.notify_all()
                requests.put(None)
            if state is StreamState.CLOSED:
                return
            if state is StreamState.FORKING or again:
                continue
            if isinstance(error, grpc.RpcError):
                code = error.code()  # type: ignore[attr-defined]
                if code in _FATAL_CODES:
                    with self._cond:
                        self.error = from_rpc_error(error)
                        self._cond.notify_all()
                    logger.error("trackline: the metric stream was refused: %s", error)
            if down_since is None:
                down_since = time.monotonic()
                logger.warning(
                    "trackline: metric stream to %s interrupted (%s); reconnecting",
                    self._transport.uri,
                    _describe(error),
                )
            with self._cond:
                self._cond.wait_for(
                    lambda: self.state is StreamState.CLOSED, delay * (0.5 + random.random())
                )
            delay = min(delay * 2, BACKOFF_MAX)

    def _open(self, requests: queue.SimpleQueue[bytes | None]) -> Any:
        # Requests go out pre-encoded (see _batching), so no request serializer.
        stream = self._transport.channel.stream_stream(
            STREAM_METHOD,
            request_serializer=None,
            response_deserializer=ipb.StreamMetricsResponse.FromString,
        )
        return stream(_drain_queue(requests), metadata=self._transport.call_metadata())

    def before_fork(self) -> None:
        """Ends the stream and waits (at most FORK_QUIESCE_SECONDS) until the connection
        thread has left gRPC; it opens no new stream until ``after_fork_in_parent``."""
        deadline = time.monotonic() + FORK_QUIESCE_SECONDS
        with self._cond:
            if self.state in (StreamState.CONNECTING, StreamState.STREAMING):
                self.state = StreamState.QUIESCING
            elif self.state is StreamState.IDLE:
                self.state = StreamState.FORKING
            self._end_stream()
            left = self._cond.wait_for(
                lambda: self.state is not StreamState.QUIESCING, FORK_QUIESCE_SECONDS
            )
            threads = self._grpc_threads
        # gRPC's own threads of the call (its poller, the request reader) end just after it.
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if not left or any(t.is_alive() for t in threads):
            logger.warning("trackline: the metric stream was still open at fork")

    def after_fork_in_parent(self) -> None:
        with self._cond:
            if self.state in (StreamState.QUIESCING, StreamState.FORKING):
                self.state = StreamState.IDLE
            self._cond.notify_all()

    def _end_stream(self) -> None:  # under cond
        if self._requests is not None:
            self._requests.put(None)
            self._requests = None
        if self._call is not None:
            self._call.cancel()

    def _on_handshake(self, resp: Any, requests: queue.SimpleQueue[bytes | None]) -> bool:
        """Settles what the server has stored and queues the rest for sending; False when the
        server's mark cannot be ours, and the sender took a new identity instead."""
        with self._cond:
            unacked = self._unacked
            stored = resp.acked_seq + unacked.base
            if not unacked.acked <= stored <= unacked.seq:
                # Above our last seq: batches we never sent (ours would then be skipped as
                # resends). Below what it acknowledged: the server's store lost them (replaced
                # or restored). Either way our unacked batches are not stored under this id.
                if stored < unacked.acked:
                    logger.error(
                        "trackline: the server no longer has batches %d to %d of writer %s,"
                        " which it acknowledged (was its store replaced or restored?); the"
                        " unacknowledged points go on under a new writer id",
                        stored - unacked.base + 1,
                        unacked.acked - unacked.base,
                        self.writer_id,
                    )
                else:
                    logger.error(
                        "trackline: the server has batches of writer %s beyond the %d sent;"
                        " the unacknowledged points go on under a new writer id",
                        self.writer_id,
                        unacked.seq - unacked.base,
                    )
                self._new_identity()
                return False
            self.error = None
            self._settle(resp)
            for msg in unacked.messages():
                requests.put(msg)
            if self.state is StreamState.CONNECTING:
                self.state = StreamState.STREAMING
            return True

    def _new_identity(self) -> None:  # under cond, with no stream streaming
        """Goes on as a new writer (id and key), renumbering the unacked batches."""
        self.writer_id = new_writer_id()
        self._writer_key = os.urandom(32)
        self._unacked.renumber()

    def _settle(self, resp: Any) -> None:  # under cond
        self._unacked.settle(resp)
        self._settled()


def _drain_queue(requests: queue.SimpleQueue[bytes | None]) -> Iterator[bytes]:
    """The request iterator of one stream: queued messages until ``None``."""
    while True:
        msg = requests.get()
        if msg is None:
            return
        yield msg


def _grpc_threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """The threads gRPC started since ``before``: its Python threads run a function named
    ``_run`` (Python names such a thread "Thread-N (_run)")."""
    return [t for t in threading.enumerate() if t not in before and t.name.endswith("(_run)")]


def _describe(error: BaseException | None) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
    return "the server ended it" if error is None else repr(error)
