"""TracklineClient: explicit ids for every TrackingService call, typed exceptions, retries."""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Literal, TypeVar, cast

import grpc

from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from ._exceptions import Unavailable, from_rpc_error
from ._uri import DEFAULT_URI as DEFAULT_URI
from ._uri import Target, open_channel, resolve_uri

T = TypeVar("T")
ViewType = Literal["active", "deleted", "all"]
_VIEW_TYPES = {
    "active": tpb.VIEW_TYPE_ACTIVE_ONLY,
    "deleted": tpb.VIEW_TYPE_DELETED_ONLY,
    "all": tpb.VIEW_TYPE_ALL,
}
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
# Every channel of the client (calls and the metric stream) accepts the server's largest message.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
DEFAULT_CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 60.0
WARN_AFTER = 1.0  # a wait for the server longer than this is announced on the log, once
_PROBE_METHOD = "/grpc.health.v1.Health/Check"
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")  # what a gRPC ASCII header value may hold
logger = logging.getLogger("trackline")


class TracklineClient:
    """Synchronous client. ``uri`` is one of the forms in ``trackline._uri`` (``host[:port]``,
    ``http://``, ``https://``, ...; default ``TRACKLINE_URI``, else localhost:50051) and is
    checked at once (``InvalidUri``). The channel is created lazily per process, so a client
    inherited across ``fork`` opens a fresh channel in the child.

    The first call on a channel waits at most ``connect_timeout`` seconds (default 5, or the
    environment variable ``TRACKLINE_CONNECT_TIMEOUT``) for the server, logging a warning
    after one second, then raises ``Unavailable`` (reason SERVER_UNREACHABLE). Once the server
    has been reached, UNAVAILABLE is retried with jittered exponential backoff for up to
    ``retry_seconds``, but only for calls that a retry cannot apply twice: reads, calls that
    set a state (update, delete, restore, tags) and writes that carry a ``request_id``
    (LogBatch). CreateRun and CreateExperiment carry no request id: they are sent once the
    connection is up and never resent (see ``_call``)."""

    def __init__(
        self,
        uri: str | None = None,
        *,
        token: str | None = None,
        retry_seconds: float = 30.0,
        connect_timeout: float | None = None,
    ) -> None:
        self.target: Target = resolve_uri(uri)
        self.uri = str(self.target)
        self.token = clean_token(token if token is not None else os.environ.get("TRACKLINE_TOKEN"))
        self.retry_seconds = retry_seconds
        self.connect_timeout = (
            connect_timeout if connect_timeout is not None else _env_connect_timeout()
        )
        if not self.connect_timeout > 0:
            raise ValueError("connect_timeout must be a positive number of seconds")
        self._pid = -1
        self._channel: grpc.Channel | None = None
        self._stub: tracking_pb2_grpc.TrackingServiceStub | None = None
        self._reached = False  # whether the server has answered on the current channel

    @property
    def stub(self) -> tracking_pb2_grpc.TrackingServiceStub:
        """The generated stub: the escape hatch for anything the wrapper does not cover (its
        calls get neither the token nor the connection wait)."""
        if self._stub is None or self._pid != os.getpid():
            self._channel = open_channel(self.target, CHANNEL_OPTIONS)
            self._stub = tracking_pb2_grpc.TrackingServiceStub(self._channel)
            self._pid = os.getpid()
            self._reached = False
        return self._stub

    def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            self._channel.close()
        self._channel = self._stub = None

    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The call metadata: exactly one ``authorization`` entry when a token is set."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def _call(self, method: Callable[..., T], request: Any, *, resend: bool = True) -> T:
        """Calls ``method``, waiting for the connection first and retrying UNAVAILABLE.

        ``resend=False`` is for calls a resend could apply twice (a create without a request
        id). An UNAVAILABLE can come after the request reached the server (the connection
        dropped before the reply, or the server itself answered it), and the client cannot
        tell which, so such a call is never retried. What is safe is waiting before it is
        sent: it waits until the server answers a probe (up to ``connect_timeout`` on first
        contact, ``retry_seconds`` but at least ``connect_timeout`` later), then goes out
        with ``wait_for_ready``, so that gRPC holds it, unsent, if the connection drops in
        between, instead of failing it."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        warned = False
        while True:
            if not self._reached or not resend:
                limit = self.connect_timeout
                if self._reached:
                    limit = max(limit, deadline - time.monotonic())
                self._wait_for_server(limit)
            try:
                return method(
                    request,
                    metadata=self._metadata(),
                    timeout=CALL_TIMEOUT,
                    wait_for_ready=not resend,
                )
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                left = deadline - time.monotonic()
                if code != grpc.StatusCode.UNAVAILABLE or not resend or left <= 0:
                    raise from_rpc_error(err) from None
                if not warned and self.retry_seconds - left > WARN_AFTER:
                    warned = True
                    logger.warning(
                        "trackline: the server at %s is unavailable (%s); retrying for %g s",
                        self.uri,
                        err.details(),  # type: ignore[attr-defined]
                        self.retry_seconds,
                    )
                time.sleep(min(left, delay * (0.5 + random.random())))
                delay = min(delay * 2, 2.0)

    def _wait_for_server(self, limit: float) -> None:
        """Waits up to ``limit`` seconds for the server to answer, or raises Unavailable.

        The probe is a health check (open to every caller; a server without one answers
        UNIMPLEMENTED, which proves the connection as well) sent with ``wait_for_ready``, which
        gRPC holds until the connection is up. ``grpc.channel_ready_future`` would do without
        a call, but its polling thread outlives it and fails in the background when the
        channel is then closed."""
        self.stub  # noqa: B018 (opens the channel of this process)
        assert self._channel is not None
        probe = self._channel.unary_unary(_PROBE_METHOD)  # bytes in and out
        began = time.monotonic()
        warned = False
        while True:
            left = limit - (time.monotonic() - began)
            if left <= 0:
                raise Unavailable(
                    f"cannot reach the Trackline server at {self.uri} after {limit:g} s"
                    " (is it running? set TRACKLINE_URI)",
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

    def _pages(self, method: Callable[..., Any], request: Any, field: str) -> Iterator[Any]:
        """Yields the items in ``field`` of every page, passing each next_page_token back."""
        while True:
            resp = self._call(method, request)
            yield from getattr(resp, field)
            if not resp.next_page_token:
                return
            request.page_token = resp.next_page_token

    # Experiments
    def create_experiment(
        self, name: str, *, artifact_location: str = "", tags: Mapping[str, str] | None = None
    ) -> pb.Experiment:
        req = tpb.CreateExperimentRequest(
            name=name,
            artifact_location=artifact_location,
            tags=[pb.Tag(key=k, value=v) for k, v in (tags or {}).items()],
        )
        resp = self._call(self.stub.CreateExperiment, req, resend=False)
        return cast(pb.Experiment, resp.experiment)

    def get_experiment(self, experiment_id: str) -> pb.Experiment:
        req = tpb.GetExperimentRequest(experiment_id=experiment_id)
        resp = self._call(self.stub.GetExperiment, req)
        return cast(pb.Experiment, resp.experiment)

    def get_experiment_by_name(self, name: str) -> pb.Experiment:
        req = tpb.GetExperimentByNameRequest(name=name)
        resp = self._call(self.stub.GetExperimentByName, req)
        return cast(pb.Experiment, resp.experiment)

    def search_experiments(
        self,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        view_type: ViewType = "active",
        max_results: int | None = None,
        page_size: int = 0,
    ) -> Iterator[pb.Experiment]:
        """Yields matching experiments, fetching pages as needed; ``filter`` covers ``name``,
        ``experiment_id``, ``creation_time``, ``last_update_time`` and ``tags.<key>``."""

        req = tpb.SearchExperimentsRequest(
            filter=filter,
            order_by=order_by or [],
            page_size=page_size,
            view_type=_view_type(view_type),
        )
        pages = self._pages(self.stub.SearchExperiments, req, "experiments")
        return islice(pages, _max_results(max_results))

    def rename_experiment(self, experiment_id: str, new_name: str) -> pb.Experiment:
        req = tpb.UpdateExperimentRequest(experiment_id=experiment_id, new_name=new_name)
        resp = self._call(self.stub.UpdateExperiment, req)
        return cast(pb.Experiment, resp.experiment)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        req = tpb.SetExperimentTagRequest(experiment_id=experiment_id, key=key, value=str(value))
        self._call(self.stub.SetExperimentTag, req)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        req = tpb.DeleteExperimentTagRequest(experiment_id=experiment_id, key=key)
        self._call(self.stub.DeleteExperimentTag, req)

    # Runs
    def create_run(
        self,
        experiment_id: str = "0",
        *,
        run_name: str = "",
        start_time: int = 0,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str = "",
    ) -> pb.Run:
        req = tpb.CreateRunRequest(
            experiment_id=experiment_id,
            run_name=run_name,
            start_time=start_time,
            tags=[pb.Tag(key=k, value=v) for k, v in (tags or {}).items()],
            parent_run_id=parent_run_id,
        )
        resp = self._call(self.stub.CreateRun, req, resend=False)
        return cast(pb.Run, resp.run)

    def get_run(self, run_id: str) -> pb.Run:
        resp = self._call(self.stub.GetRun, tpb.GetRunRequest(run_id=run_id))
        return cast(pb.Run, resp.run)

    def update_run(
        self,
        run_id: str,
        *,
        status: int = 0,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> pb.Run:
        req = tpb.UpdateRunRequest(run_id=run_id, status=status)  # type: ignore[arg-type]
        if end_time is not None:
            req.end_time = end_time
        if run_name is not None:
            req.run_name = run_name
        resp = self._call(self.stub.UpdateRun, req)
        return cast(pb.Run, resp.run)

    # Data
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: list[pb.MetricSeries] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Writes metrics, params and tags of one run atomically (all or nothing)."""
        req = tpb.LogBatchRequest(
            run_id=run_id,
            metrics=metrics or [],
            params=[pb.Param(key=k, value=str(v)) for k, v in (params or {}).items()],
            tags=[pb.Tag(key=k, value=str(v)) for k, v in (tags or {}).items()],
            request_id=uuid.uuid4().hex,
        )
        self._call(self.stub.LogBatch, req)

    def log_metric(
        self, run_id: str, key: str, value: float, step: int = 0, timestamp: int | None = None
    ) -> None:
        ts = timestamp if timestamp is not None else int(time.time() * 1000)
        series = pb.MetricSeries(key=key, steps=[step], timestamps=[ts], values=[float(value)])
        self.log_batch(run_id, metrics=[series])

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params={key: value})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags={key: value})

    def search_runs(
        self,
        experiment_ids: list[str] | None = None,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        view_type: ViewType = "active",
        max_results: int | None = None,
        page_size: int = 0,
    ) -> Iterator[pb.Run]:
        """Yields matching runs with their data, fetching pages as needed. No experiment ids
        means every experiment. ``filter`` example:
        ``"metrics.loss < 0.3 and (params.opt = 'adam' or tags.team LIKE 'cv%')"``;
        a malformed one raises InvalidArgument naming the position."""

        req = tpb.SearchRunsRequest(
            experiment_ids=experiment_ids or [],
            filter=filter,
            order_by=order_by or [],
            page_size=page_size,
            view_type=_view_type(view_type),
        )
        return islice(self._pages(self.stub.SearchRuns, req, "runs"), _max_results(max_results))

    def delete_experiment(self, experiment_id: str) -> None:
        self._call(
            self.stub.DeleteExperiment, tpb.DeleteExperimentRequest(experiment_id=experiment_id)
        )

    def restore_experiment(self, experiment_id: str) -> None:
        self._call(
            self.stub.RestoreExperiment, tpb.RestoreExperimentRequest(experiment_id=experiment_id)
        )

    def delete_run(self, run_id: str) -> None:
        self._call(self.stub.DeleteRun, tpb.DeleteRunRequest(run_id=run_id))

    def restore_run(self, run_id: str) -> None:
        self._call(self.stub.RestoreRun, tpb.RestoreRunRequest(run_id=run_id))

    def delete_tag(self, run_id: str, key: str) -> None:
        self._call(self.stub.DeleteRunTag, tpb.DeleteRunTagRequest(run_id=run_id, key=key))

    def get_metric_history(
        self,
        run_id: str,
        key: str,
        *,
        page_size: int = 0,
        start_step: int | None = None,
        end_step: int | None = None,
        rank: int | None = None,
        max_points: int = 0,
    ) -> Iterator[tuple[int, int, float]]:
        """Yields (step, timestamp, value) ordered by step, then timestamp.

        ``start_step`` and ``end_step`` bound the steps (both inclusive); ``rank`` keeps only
        the points one rank logged (default: every rank's points, merged). With
        ``max_points`` > 0 it yields a chart view of at most that many points, fetched in one
        call: the step range is cut into ``max_points // 3`` buckets, each keeping its
        minimum, maximum and last point, so spikes stay visible; a series with no more than
        ``max_points`` points comes whole. Otherwise every point, fetched in pages of
        ``page_size`` (0: the server's default) as the iteration goes: each page is asked
        for while the caller iterates the one before, so at most two pages are held."""
        req = tpb.GetMetricHistoryRequest(
            run_id=run_id, key=key, page_size=page_size, max_points=max_points
        )
        if start_step is not None:
            req.start_step = start_step
        if end_step is not None:
            req.end_step = end_step
        if rank is not None:
            req.rank = rank
        method = self.stub.GetMetricHistory
        resp = self._call(method, req)
        while True:
            following = None
            if resp.next_page_token:
                req.page_token = resp.next_page_token
                following = method.future(req, metadata=self._metadata(), timeout=CALL_TIMEOUT)
            s = resp.series
            try:
                yield from zip(s.steps, s.timestamps, s.values, strict=True)
            except BaseException:  # the caller stopped early: the next page is not wanted
                if following is not None:
                    following.cancel()
                raise
            if following is None:
                return
            try:
                resp = following.result()
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    raise from_rpc_error(err) from None
                resp = self._call(method, req)  # retried with backoff

    def get_metric_histories(
        self,
        run_ids: Sequence[str],
        keys: Sequence[str],
        *,
        max_points: int = 0,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> dict[tuple[str, str], list[tuple[int, int, float]]]:
        """Reads several runs' series in one call: {(run_id, key): [(step, timestamp, value),
        ...]} for every run and key that has points in the step range, in request order, all
        ranks merged and ordered by step. At most 100 runs and 100 keys. ``max_points`` > 0
        downsamples each series as in ``get_metric_history``; with 0 every point comes, and
        more than 1,000,000 in all raises ResourceExhausted (reason HISTORY_TOO_LARGE)."""
        req = tpb.GetMetricHistoriesRequest(
            run_ids=list(run_ids), keys=list(keys), max_points=max_points
        )
        if start_step is not None:
            req.start_step = start_step
        if end_step is not None:
            req.end_step = end_step
        resp = self._call(self.stub.GetMetricHistories, req)
        out: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
        for entry in resp.series:
            s = entry.series
            out[(entry.run_id, s.key)] = list(zip(s.steps, s.timestamps, s.values, strict=True))
        return out


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


def _max_results(n: int | None) -> int | None:
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"max_results must be None or an integer >= 0, not {n!r:.80}")
    return n


def _view_type(name: str) -> tpb.ViewType:
    try:
        return _VIEW_TYPES[name]
    except KeyError:
        raise ValueError(f"view_type must be one of {sorted(_VIEW_TYPES)}, not {name!r}") from None


__all__ = ["TracklineClient", "ViewType"]
