"""The transport under TracklineClient and MetricSender: one server's channel, opened per
process, the token sent as metadata, and the unary calls with their connection wait, their
retries and their errors.

Every unary method of a service is a ``UnaryCall`` (``_calls`` has them per service):
``call(request, *, timeout=None, metadata=())``; a server stream is a ``StreamCall``, which
is never retried. A call that a repeat cannot apply twice is retried: reads and calls that
set a state (``idempotent``), and any call whose request carries a ``request_id``,
which the server uses to answer a repeat with what the first attempt did. Such a call is
retried when the server could not be reached (UNAVAILABLE), asked to be called again later
(google.rpc.RetryInfo, whose delay is then waited out) or applied a concurrent attempt with
the same request id first (REQUEST_ID_IN_FLIGHT), for up to ``retry_seconds``. Any
other call waits until the server answers and then goes out once. Every failure is raised as
the exception of its status code (``_exceptions``), carrying the server's reason.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import grpc
from google.protobuf.message import Message

from trackline.v1 import (
    artifacts_pb2_grpc,
    auth_pb2_grpc,
    ingest_pb2_grpc,
    projects_pb2_grpc,
    registry_pb2_grpc,
    tracking_pb2_grpc,
)

from . import _fork
from ._exceptions import TracklineError, Unavailable, from_rpc_error
from ._tls import ClientTls, connection_failure_hint, load_tls
from ._uri import Target, open_channel, resolve_uri

MAX_MESSAGE_BYTES = 128 * 1024 * 1024
# Every channel (calls and the metric stream) accepts the server's largest message.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRY_SECONDS = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
WARN_AFTER = 1.0  # a wait for the server longer than this is announced on the log, once
BACKOFF_START, BACKOFF_MAX = 0.05, 2.0
_PROBE_METHOD = "/grpc.health.v1.Health/Check"
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")  # what a gRPC ASCII header value may hold
_INHERITED: list[grpc.Channel] = []  # channels a forked child got from its parent

Metadata = Sequence[tuple[str, str]]
Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
logger = logging.getLogger("trackline")


class Stubs:
    """The generated stub of every service on one channel: ``tracking`` (TrackingService),
    ``ingest`` (IngestService), ``registry`` (RegistryService), ``artifacts``
    (ArtifactService), ``projects`` (ProjectService) and ``tokens`` (TokenService). They
    are the escape hatch: their calls get no token, no connection wait, no retry and raise
    ``grpc.RpcError``; pass ``metadata=transport.metadata`` for the token and
    ``trackline._exceptions.from_rpc_error`` maps an error."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.tracking = tracking_pb2_grpc.TrackingServiceStub(channel)
        self.ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        self.registry = registry_pb2_grpc.RegistryServiceStub(channel)
        self.projects = projects_pb2_grpc.ProjectServiceStub(channel)
        self.artifacts = artifacts_pb2_grpc.ArtifactServiceStub(channel)
        self.tokens = auth_pb2_grpc.TokenServiceStub(channel)


class Transport:
    """The connection to one server. ``uri`` is one of the forms in ``trackline._uri``
    (default ``TRACKLINE_URI``, else localhost:50051), checked at once (``InvalidUri``);
    ``ca_file``, ``client_cert`` and ``client_key`` are the TLS settings of
    ``trackline._tls`` (default their environment variables), read at once
    (``InvalidTlsSettings``); ``token`` (default ``TRACKLINE_TOKEN``) goes out as one
    ``authorization`` entry of ``metadata``; ``options`` are channel options beside
    ``CHANNEL_OPTIONS``.

    The channel is opened on first use, once per process: a forked child sets the parent's
    aside untouched and opens its own. ``timeout`` is the default deadline of each attempt of
    a call in seconds (None: none). The first call on a channel waits at most
    ``connect_timeout`` seconds (default 5, or ``TRACKLINE_CONNECT_TIMEOUT``) for the server,
    logging a warning after one second, then raises ``Unavailable`` (SERVER_UNREACHABLE);
    calls that may be repeated are retried for up to ``retry_seconds`` (module docstring)."""

    def __init__(
        self,
        uri: str | None = None,
        *,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        connect_timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
        ca_file: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self.tls: ClientTls = load_tls(ca_file, client_cert, client_key)
        self.target: Target = resolve_uri(uri, self.tls)
        self.uri = str(self.target)
        self.token = clean_token(token if token is not None else os.environ.get("TRACKLINE_TOKEN"))
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {self.token}"),) if self.token else ()
        )
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.connect_timeout = (
            connect_timeout if connect_timeout is not None else _env_connect_timeout()
        )
        if not self.connect_timeout > 0:
            raise ValueError("connect_timeout must be a positive number of seconds")
        self._options = (*CHANNEL_OPTIONS, *options)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: Stubs | None = None
        self._reached = False  # whether the server has answered on the current channel
        _fork.reset_in_child(self)

    @property
    def channel(self) -> grpc.Channel:
        """This process's channel to the server, opened on first use."""
        return self._open()[0]

    @property
    def stubs(self) -> Stubs:
        """The generated stubs on this process's channel (see ``Stubs``)."""
        return self._open()[1]

    def _open(self) -> tuple[grpc.Channel, Stubs]:
        with self._lock:
            if self._channel is None or self._stubs is None:
                self._channel = open_channel(self.target, self.tls, self._options)
                self._stubs = Stubs(self._channel)
                self._reached = False
            return self._channel, self._stubs

    def close(self) -> None:
        """Closes the channel; a later call opens a new one."""
        with self._lock:
            channel, self._channel, self._stubs = self._channel, None, None
        if channel is not None:
            channel.close()

    def _after_fork_in_child(self) -> None:
        """In a forked child: the parent's channel stays the parent's, never closed nor
        collected here (that would act on the parent's connections); the child opens its own
        on first use."""
        if self._channel is not None:
            _INHERITED.append(self._channel)
        self._lock = threading.Lock()  # another thread of the parent may have held it
        self._channel = self._stubs = None
        self._reached = False

    def call_metadata(self, metadata: Metadata = ()) -> tuple[tuple[str, str], ...] | None:
        """The metadata a call sends: ``metadata``, then the transport's own entries (the
        token) for the keys ``metadata`` does not set, so that a call may send another token."""
        if not metadata:
            return self.metadata or None
        keys = {key.lower() for key, _ in metadata}
        return (*metadata, *(m for m in self.metadata if m[0] not in keys)) or None

    def call(
        self,
        method: Callable[..., Any],
        request: Message,
        *,
        retry: bool,
        timeout: float | None = None,
        metadata: Metadata = (),
        sent: grpc.Future | None = None,
    ) -> Any:
        """Calls the stub's ``method`` with ``request`` and returns its response; failures are
        raised as ``TracklineError``. ``retry`` says whether the call may be repeated.
        ``sent`` is a first attempt already under way (a prefetch), whose outcome counts as
        that attempt's.

        A call that must not be repeated is sent only once the server has answered a probe
        (up to ``connect_timeout`` on first contact, ``retry_seconds`` but at least
        ``connect_timeout`` later), with ``wait_for_ready``, so that gRPC holds it, unsent,
        if the connection drops in between instead of failing it: an UNAVAILABLE may come
        after the server applied the call, and the client cannot tell."""
        timeout = self.timeout if timeout is None else timeout
        sent_metadata = self.call_metadata(metadata)
        deadline = time.monotonic() + self.retry_seconds
        backoff = BACKOFF_START
        warned = False
        while True:
            try:
                if sent is not None:
                    future, sent = sent, None
                    return future.result()
                if not self._reached or not retry:
                    limit = self.connect_timeout
                    if self._reached:
                        limit = max(limit, deadline - time.monotonic())
                    self.wait_for_server(limit)
                return method(
                    request, metadata=sent_metadata, timeout=timeout, wait_for_ready=not retry
                )
            except grpc.RpcError as err:
                error = from_rpc_error(err)
            left = deadline - time.monotonic()
            asked = error.retry_delay
            if not retry or not retryable(error) or left <= 0 or (asked or 0) > left:
                raise error
            if not warned and self.retry_seconds - left > WARN_AFTER:
                warned = True
                logger.warning(
                    "trackline: the server at %s is %s (%s); retrying for %g s",
                    self.uri,
                    "unavailable" if error.code == grpc.StatusCode.UNAVAILABLE else "busy",
                    error.message,
                    self.retry_seconds,
                )
            time.sleep(min(left, backoff * (0.5 + random.random()) if asked is None else asked))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def wait_for_server(self, limit: float) -> None:
        """Waits up to ``limit`` seconds for the server to answer, or raises Unavailable.

        The probe is a health check (open to every caller; a server without one answers
        UNIMPLEMENTED, which proves the connection as well) sent with ``wait_for_ready``, which
        gRPC holds until the connection is up. ``grpc.channel_ready_future`` would do without
        a call, but its polling thread outlives it and fails in the background when the
        channel is then closed."""
        probe = self.channel.unary_unary(_PROBE_METHOD)  # bytes in and out
        began = time.monotonic()
        warned = False
        while True:
            left = limit - (time.monotonic() - began)
            if left <= 0:
                hint = self._connection_failure_hint(probe)
                raise Unavailable(
                    f"cannot reach the Trackline server at {self.uri} after {limit:g} s"
                    + (f": {hint}" if hint else " (is it running? set TRACKLINE_URI)"),
                    grpc.StatusCode.UNAVAILABLE,
                    "SERVER_UNREACHABLE",
                )
            try:
                probe(b"", timeout=left if warned else min(left, WARN_AFTER), wait_for_ready=True)
                break
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                if code not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    break  # an answer, if a refusal: the server is there
                if code == grpc.StatusCode.UNAVAILABLE:  # connected, then dropped: not so fast
                    time.sleep(min(left, 0.05))
            if not warned and WARN_AFTER <= time.monotonic() - began < limit:
                warned = True
                logger.warning(
                    "trackline: waiting for the Trackline server at %s (up to %g s)",
                    self.uri,
                    limit,
                )
        self._reached = True

    def _connection_failure_hint(self, probe: Callable[..., Any]) -> str | None:
        """What the channel's last failure to connect says about TLS (a handshake refused, a
        plaintext server), asked by one probe that does not wait for the connection."""
        try:
            probe(b"", timeout=1.0)
        except grpc.RpcError as err:
            return connection_failure_hint(err.details() or "", self.target.tls)  # type: ignore[attr-defined]
        return None


def retryable(error: TracklineError) -> bool:
    """Whether another attempt of a call that may be repeated can succeed: the server was not
    reached, or dropped the call (UNAVAILABLE); it asked to be called again (RetryInfo); or a
    concurrent attempt with the same request id was applied first, whose result a retry gets
    (ABORTED REQUEST_ID_IN_FLIGHT)."""
    return (
        error.code == grpc.StatusCode.UNAVAILABLE
        or error.retry_delay is not None
        or error.reason == "REQUEST_ID_IN_FLIGHT"
    )


class UnaryCall(Generic[Req, Resp]):
    """One unary method of the service whose stub is ``stubs.<service>`` through a transport.
    ``idempotent``: repeating the call changes nothing the first did not, so it is retried;
    any other call is retried only when its request carries a ``request_id`` (module
    docstring)."""

    def __init__(
        self,
        transport: Transport,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        *,
        idempotent: bool,
        service: str = "tracking",
    ) -> None:
        self.transport = transport
        self.name = name
        self.service = service
        self.request_type = request_type
        self.response_type = response_type
        self.idempotent = idempotent

    def retries(self, request: Req) -> bool:
        """Whether ``request`` may be sent again when an attempt fails."""
        return self.idempotent or bool(getattr(request, "request_id", ""))

    def __call__(
        self, request: Req, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> Resp:
        """Sends ``request`` and returns the response. ``timeout`` is each attempt's deadline
        in seconds (default: the transport's); ``metadata`` adds (key, value) entries, and
        an ``authorization`` entry replaces the token."""
        return cast(
            Resp,
            self.transport.call(
                self._method(request),
                request,
                retry=self.retries(request),
                timeout=timeout,
                metadata=metadata,
            ),
        )

    def prefetch(
        self, request: Req, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> Prefetch[Resp]:
        """Sends ``request`` now and returns at once; ``result()`` of the prefetch waits for the
        response (retrying as a call would), ``cancel()`` drops it."""
        return Prefetch(self, request, timeout, metadata)

    def pages(
        self,
        request: Req,
        field: str,
        *,
        max_results: int | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[Any]:
        """Yields the items in ``field`` of every page of a search, at most ``max_results``
        (None: all; anything but an integer >= 0 is a ValueError at once), fetching the pages
        as the iteration goes: each response's ``next_page_token`` is sent back in
        ``request`` (which it changes) for the next one."""
        if max_results is not None and (
            not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 0
        ):
            raise ValueError(
                f"max_results must be None or an integer >= 0, not {max_results!r:.80}"
            )
        return islice(self._pages(request, field, timeout, metadata), max_results)

    def _pages(
        self, request: Req, field: str, timeout: float | None, metadata: Metadata
    ) -> Iterator[Any]:
        while True:
            resp = self(request, timeout=timeout, metadata=metadata)
            yield from getattr(resp, field)
            if not resp.next_page_token:  # type: ignore[attr-defined]
                return
            request.page_token = resp.next_page_token  # type: ignore[attr-defined]

    def _method(self, request: Req) -> Callable[..., Any]:
        return stub_method(self.transport, self.service, self.name, self.request_type, request)


def stub_method(
    transport: Transport, service: str, name: str, request_type: type[Message], request: Message
) -> Callable[..., Any]:
    """The generated stub's method ``name`` of ``stubs.<service>``, after checking that
    ``request`` is the method's request type (a TypeError otherwise)."""
    if not isinstance(request, request_type):
        raise TypeError(f"{name} takes a {request_type.__name__}, not {type(request).__name__}")
    return cast(Callable[..., Any], getattr(getattr(transport.stubs, service), name))


class StreamCall(Generic[Req, Resp]):
    """One server-streaming method (of ``stubs.<service>``) through a transport: the token,
    the first contact's wait for the server and typed errors, but no retry (a stream that
    broke is opened again by the caller, from where it got to)."""

    def __init__(
        self,
        transport: Transport,
        name: str,
        request_type: type[Req],
        response_type: type[Resp],
        *,
        service: str,
    ) -> None:
        self.transport = transport
        self.name = name
        self.request_type = request_type
        self.response_type = response_type
        self.service = service

    def __call__(
        self, request: Req, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> ServerStream[Resp]:
        """Opens the stream. ``timeout`` bounds the whole stream in seconds (None, the
        default: it runs until closed); ``metadata`` as for a unary call."""
        transport = self.transport
        method = stub_method(transport, self.service, self.name, self.request_type, request)
        if not transport._reached:
            transport.wait_for_server(transport.connect_timeout)
        responses = method(request, metadata=transport.call_metadata(metadata), timeout=timeout)
        return ServerStream(responses)


class ServerStream(Iterator[Resp]):
    """The responses of an open server stream, raising its failure as ``TracklineError``.
    ``close()`` (from any thread, or leaving a ``with`` block) cancels it: the iteration then
    ends, as it does when the server ends the stream."""

    def __init__(self, responses: Any) -> None:
        self._responses = responses
        self._closed = False

    def __next__(self) -> Resp:
        try:
            return cast(Resp, next(self._responses))
        except grpc.RpcError as err:
            if self._closed and err.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise StopIteration from None
            raise from_rpc_error(err) from None

    def close(self) -> None:
        self._closed = True
        self._responses.cancel()

    def __enter__(self) -> ServerStream[Resp]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Prefetch(Generic[Resp]):
    """A call sent before its response is needed (see ``UnaryCall.prefetch``)."""

    def __init__(
        self,
        call: UnaryCall[Any, Resp],
        request: Message,
        timeout: float | None,
        metadata: Metadata,
    ) -> None:
        self._call = call
        self._request = type(request)()
        self._request.CopyFrom(request)  # the caller may change its own before the retry
        self._timeout = timeout
        self._metadata = metadata
        transport = call.transport
        self._method = call._method(self._request)
        self._future = self._method.future(  # type: ignore[attr-defined]
            self._request,
            metadata=transport.call_metadata(metadata),
            timeout=transport.timeout if timeout is None else timeout,
        )

    def result(self) -> Resp:
        """The response; the prefetch's failure is retried like a failed attempt of a call."""
        return cast(
            Resp,
            self._call.transport.call(
                self._method,
                self._request,
                retry=self._call.retries(self._request),
                timeout=self._timeout,
                metadata=self._metadata,
                sent=self._future,
            ),
        )

    def cancel(self) -> None:
        """Drops the call: its response is not wanted."""
        self._future.cancel()


def clean_token(token: str | None) -> str | None:
    """The token without surrounding whitespace (as read from a file); None when empty."""
    token = (token or "").strip()
    if token and not _HEADER_VALUE.fullmatch(token):
        raise ValueError("the token may only hold printable ASCII characters")
    return token or None


def _env_connect_timeout() -> float:
    text = os.environ.get("TRACKLINE_CONNECT_TIMEOUT", "")
    if not text.strip():
        return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError(
            f"TRACKLINE_CONNECT_TIMEOUT must be a positive number of seconds, not {text!r:.80}"
        )
    return seconds
