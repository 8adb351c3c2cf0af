"""TracklineClient: explicit ids for every TrackingService call, typed exceptions, retries."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

from google.protobuf import field_mask_pb2

from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from ._artifacts import ArtifactCalls, ArtifactMethods
from ._calls import RegistryCalls, TrackingCalls
from ._context import current_user
from ._projects_client import ProjectMethods
from ._registry import RegistryMethods
from ._tls import ClientTls
from ._tokens import TokenMethods
from ._transport import DEFAULT_RETRY_SECONDS, DEFAULT_TIMEOUT, Metadata, Stubs, Transport
from ._uri import Target
from .data import Dataset

ViewType = Literal["active", "deleted", "all"]
_VIEW_TYPES = {
    "active": tpb.VIEW_TYPE_ACTIVE_ONLY,
    "deleted": tpb.VIEW_TYPE_DELETED_ONLY,
    "all": tpb.VIEW_TYPE_ALL,
}


class MetricPoint(NamedTuple):
    """One point of a metric's history; unpacks as ``step, timestamp, value``."""

    step: int
    timestamp: int  # milliseconds since the Unix epoch
    value: float


# A point from a (step, timestamp, value) tuple, by C calls only (no Python code per point).
_point = partial(tuple.__new__, MetricPoint)


class TracklineClient(RegistryMethods, ArtifactMethods, ProjectMethods, TokenMethods):
    """Synchronous client. ``uri`` is one of the forms in ``trackline._uri`` (``host[:port]``,
    ``http://``, ``https://``, ...; default ``TRACKLINE_URI``, else localhost:50051) and is
    checked at once (``InvalidUri``). The channel is created lazily per process, so a client
    inherited across ``fork`` opens a fresh channel in the child.

    TLS (``grpcs://``, ``https://``) trusts the system's roots, or the PEM bundle ``ca_file``
    (default ``TRACKLINE_CA_FILE``); mutual TLS presents ``client_cert`` and ``client_key``
    (default ``TRACKLINE_CLIENT_CERT``, ``TRACKLINE_CLIENT_KEY``). See ``trackline._tls``.

    The first call on a channel waits at most ``connect_timeout`` seconds (default 5, or the
    environment variable ``TRACKLINE_CONNECT_TIMEOUT``) for the server, logging a warning
    after one second, then raises ``Unavailable`` (reason SERVER_UNREACHABLE). Once the server
    has been reached, a call that a repeat cannot apply twice is retried with jittered
    exponential backoff for up to ``retry_seconds`` when the server is UNAVAILABLE, asks to
    be called again later (RetryInfo, whose delay is waited out) or applied a concurrent
    attempt with the same request id first: reads, calls that set a state (update, delete,
    restore, tags, inputs) and writes that carry a ``request_id``, which this client gives
    every CreateExperiment, CreateRun, LogBatch and LogInputs, so that the server answers a
    repeat with what the first attempt created.

    Every method takes keyword-only ``timeout`` (each attempt's deadline in seconds; default
    the client's ``timeout``, 60) and ``metadata`` ((key, value) pairs sent with the call; an
    ``authorization`` entry replaces the token). Failures raise the exception of their status
    code (``NotFound``, ``InvalidArgument``, ...) with the server's ``reason``.

    The Model Registry's methods (``RegistryMethods``) and the artifact methods
    (``ArtifactMethods``: ``log_artifact``, ``log_artifacts``, ``list_artifacts``,
    ``download_artifacts``, ``delete_artifacts``) have MLflow's ``MlflowClient`` names;
    the token methods (``TokenMethods``: ``create_token``, ``list_tokens``, ``revoke_token``,
    ``whoami``) manage the server's access tokens.

    Below the methods: ``calls`` has every TrackingService method through the same transport
    (token, wait, retries, typed errors), e.g. ``client.calls.GetRun(request)``, and
    ``registry_calls`` every RegistryService method, ``artifact_calls`` the ArtifactService
    ones but the upload stream; ``stubs`` has the raw generated stub of
    every service on the client's channel (``stubs.tracking``, ``stubs.ingest``,
    ``stubs.registry``, ``stubs.artifacts``), and ``stub`` is ``stubs.tracking``."""

    def __init__(
        self,
        uri: str | None = None,
        *,
        token: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        connect_timeout: float | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        ca_file: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self.transport = Transport(
            uri,
            token=token,
            timeout=timeout,
            retry_seconds=retry_seconds,
            connect_timeout=connect_timeout,
            ca_file=ca_file,
            client_cert=client_cert,
            client_key=client_key,
        )
        self.calls = TrackingCalls(self.transport)
        self.registry_calls = RegistryCalls(self.transport)
        self.artifact_calls = ArtifactCalls(self.transport)

    @property
    def target(self) -> Target:
        return self.transport.target

    @property
    def uri(self) -> str:
        """The server's canonical URI (``host:port``, or ``grpcs://host:port`` for TLS)."""
        return self.transport.uri

    @property
    def token(self) -> str | None:
        return self.transport.token

    @property
    def tls(self) -> ClientTls:
        """The TLS settings of the client's channels (the files named; see the class)."""
        return self.transport.tls

    @property
    def timeout(self) -> float | None:
        """The default deadline of each attempt of a call, in seconds (None: no deadline)."""
        return self.transport.timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self.transport.timeout = seconds

    @property
    def retry_seconds(self) -> float:
        """How long a call that may be repeated is retried."""
        return self.transport.retry_seconds

    @retry_seconds.setter
    def retry_seconds(self, seconds: float) -> None:
        self.transport.retry_seconds = seconds

    @property
    def connect_timeout(self) -> float:
        """How long a call waits for a server not reached yet."""
        return self.transport.connect_timeout

    @property
    def stubs(self) -> Stubs:
        """The raw generated stubs on this process's channel: no token unless passed
        (``metadata=client.transport.metadata``), no wait, no retry, ``grpc.RpcError``."""
        return self.transport.stubs

    @property
    def stub(self) -> tracking_pb2_grpc.TrackingServiceStub:
        """The generated TrackingService stub (``stubs.tracking``): the escape hatch for
        anything the wrapper does not cover (its calls get neither the token nor the
        connection wait)."""
        return self.transport.stubs.tracking

    def close(self) -> None:
        self.transport.close()

    # Experiments
    def create_experiment(
        self,
        name: str,
        *,
        artifact_location: str = "",
        tags: Mapping[str, str] | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> pb.Experiment:
        req = tpb.CreateExperimentRequest(
            name=name,
            artifact_location=artifact_location,
            tags=[pb.Tag(key=k, value=v) for k, v in (tags or {}).items()],
            request_id=uuid.uuid4().hex,
        )
        return self.calls.CreateExperiment(req, timeout=timeout, metadata=metadata).experiment

    def get_experiment(
        self, experiment_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> pb.Experiment:
        req = tpb.GetExperimentRequest(experiment_id=experiment_id)
        return self.calls.GetExperiment(req, timeout=timeout, metadata=metadata).experiment

    def get_experiment_by_name(
        self, name: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> pb.Experiment:
        req = tpb.GetExperimentByNameRequest(name=name)
        return self.calls.GetExperimentByName(req, timeout=timeout, metadata=metadata).experiment

    def search_experiments(
        self,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        view_type: ViewType = "active",
        max_results: int | None = None,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[pb.Experiment]:
        """Yields matching experiments, fetching pages as needed; ``filter`` covers ``name``,
        ``experiment_id``, ``creation_time``, ``last_update_time`` and ``tags.<key>``."""

        req = tpb.SearchExperimentsRequest(
            filter=filter,
            order_by=order_by or [],
            page_size=page_size,
            view_type=_view_type(view_type),
        )
        return self.calls.SearchExperiments.pages(
            req, "experiments", max_results=max_results, timeout=timeout, metadata=metadata
        )

    def rename_experiment(
        self,
        experiment_id: str,
        new_name: str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> pb.Experiment:
        req = tpb.UpdateExperimentRequest(experiment_id=experiment_id, new_name=new_name)
        return self.calls.UpdateExperiment(req, timeout=timeout, metadata=metadata).experiment

    def set_experiment_tag(
        self,
        experiment_id: str,
        key: str,
        value: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        req = tpb.SetExperimentTagRequest(experiment_id=experiment_id, key=key, value=str(value))
        self.calls.SetExperimentTag(req, timeout=timeout, metadata=metadata)

    def delete_experiment_tag(
        self, experiment_id: str, key: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        req = tpb.DeleteExperimentTagRequest(experiment_id=experiment_id, key=key)
        self.calls.DeleteExperimentTag(req, timeout=timeout, metadata=metadata)

    def delete_experiment(
        self, experiment_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        req = tpb.DeleteExperimentRequest(experiment_id=experiment_id)
        self.calls.DeleteExperiment(req, timeout=timeout, metadata=metadata)

    def restore_experiment(
        self, experiment_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        req = tpb.RestoreExperimentRequest(experiment_id=experiment_id)
        self.calls.RestoreExperiment(req, timeout=timeout, metadata=metadata)

    # Runs
    def create_run(
        self,
        experiment_id: str = "0",
        *,
        run_name: str = "",
        start_time: int = 0,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str = "",
        user_id: str | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> pb.Run:
        """Creates a RUNNING run. ``user_id`` defaults to ``TRACKLINE_USER``, else the user
        this process runs as; "" records none."""
        req = tpb.CreateRunRequest(
            experiment_id=experiment_id,
            run_name=run_name,
            start_time=start_time,
            tags=[pb.Tag(key=k, value=v) for k, v in (tags or {}).items()],
            parent_run_id=parent_run_id,
            request_id=uuid.uuid4().hex,
            user_id=current_user() if user_id is None else user_id,
        )
        return self.calls.CreateRun(req, timeout=timeout, metadata=metadata).run

    def get_run(
        self, run_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> pb.Run:
        req = tpb.GetRunRequest(run_id=run_id)
        return self.calls.GetRun(req, timeout=timeout, metadata=metadata).run

    def update_run(
        self,
        run_id: str,
        *,
        status: int = 0,
        end_time: int | None = None,
        run_name: str | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> pb.Run:
        req = tpb.UpdateRunRequest(run_id=run_id, status=status)  # type: ignore[arg-type]
        if end_time is not None:
            req.end_time = end_time
        if run_name is not None:
            req.run_name = run_name
        return self.calls.UpdateRun(req, timeout=timeout, metadata=metadata).run

    def delete_run(
        self, run_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        req = tpb.DeleteRunRequest(run_id=run_id)
        self.calls.DeleteRun(req, timeout=timeout, metadata=metadata)

    def restore_run(
        self, run_id: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        req = tpb.RestoreRunRequest(run_id=run_id)
        self.calls.RestoreRun(req, timeout=timeout, metadata=metadata)

    def delete_tag(
        self, run_id: str, key: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> None:
        req = tpb.DeleteRunTagRequest(run_id=run_id, key=key)
        self.calls.DeleteRunTag(req, timeout=timeout, metadata=metadata)

    def search_runs(
        self,
        experiment_ids: list[str] | None = None,
        filter: str = "",
        *,
        order_by: list[str] | None = None,
        view_type: ViewType = "active",
        max_results: int | None = None,
        page_size: int = 0,
        fields: Sequence[str] = (),
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[pb.Run]:
        """Yields matching runs with their data, fetching pages as needed. No experiment ids
        means every experiment. ``filter`` example:
        ``"metrics.loss < 0.3 and (params.opt = 'adam' or tags.team LIKE 'cv%')"``;
        a malformed one raises InvalidArgument naming the position. ``fields`` names the
        Run fields to return (the request's ``read_mask``), e.g. ``["run_id", "run_name",
        "latest_metrics"]``; empty returns them all."""

        req = tpb.SearchRunsRequest(
            experiment_ids=experiment_ids or [],
            filter=filter,
            order_by=order_by or [],
            page_size=page_size,
            view_type=_view_type(view_type),
            read_mask=field_mask_pb2.FieldMask(paths=list(fields)),
        )
        return self.calls.SearchRuns.pages(
            req, "runs", max_results=max_results, timeout=timeout, metadata=metadata
        )

    # Data
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: list[pb.MetricSeries] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Writes metrics, params and tags of one run atomically (all or nothing)."""
        req = tpb.LogBatchRequest(
            run_id=run_id,
            metrics=metrics or [],
            params=[pb.Param(key=k, value=str(v)) for k, v in (params or {}).items()],
            tags=[pb.Tag(key=k, value=str(v)) for k, v in (tags or {}).items()],
            request_id=uuid.uuid4().hex,
        )
        self.calls.LogBatch(req, timeout=timeout, metadata=metadata)

    def log_inputs(
        self,
        run_id: str,
        datasets: Sequence[pb.DatasetInput | Dataset],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        """Records datasets as inputs of the run (``trackline.data`` describes them): each
        is stored once per experiment by (name, digest). A ``Dataset`` is an input without
        context or tags; ``Dataset.to_input(context, tags)`` gives them. A dataset the run
        has already gets the new context, and the tags given are set."""
        req = tpb.LogInputsRequest(
            run_id=run_id,
            datasets=[d.to_input() if isinstance(d, Dataset) else d for d in datasets],
            request_id=uuid.uuid4().hex,
        )
        self.calls.LogInputs(req, timeout=timeout, metadata=metadata)

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int = 0,
        timestamp: int | None = None,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        ts = timestamp if timestamp is not None else int(time.time() * 1000)
        series = pb.MetricSeries(key=key, steps=[step], timestamps=[ts], values=[float(value)])
        self.log_batch(run_id, metrics=[series], timeout=timeout, metadata=metadata)

    def log_param(
        self,
        run_id: str,
        key: str,
        value: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        self.log_batch(run_id, params={key: value}, timeout=timeout, metadata=metadata)

    def set_tag(
        self,
        run_id: str,
        key: str,
        value: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> None:
        self.log_batch(run_id, tags={key: value}, timeout=timeout, metadata=metadata)

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
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[MetricPoint]:
        """Yields ``MetricPoint(step, timestamp, value)`` ordered by step, then timestamp.

        ``start_step`` and ``end_step`` bound the steps (both inclusive); ``rank`` keeps only
        the points one rank logged (default: every rank's points, merged). With
        ``max_points`` > 0 it yields a chart view of at most that many points, fetched in one
        call: the step range is cut into ``max_points // 3`` buckets, each keeping its
        minimum, maximum and last point, so spikes stay visible; a series with no more than
        ``max_points`` points comes whole. Otherwise every point, fetched in pages of
        ``page_size`` (0: the server's default) as the iteration goes: each page is asked
        for while the caller iterates the one before, so at most two pages are held, and a
        caller that stops early cancels the page asked for ahead."""
        req = tpb.GetMetricHistoryRequest(
            run_id=run_id, key=key, page_size=page_size, max_points=max_points
        )
        if start_step is not None:
            req.start_step = start_step
        if end_step is not None:
            req.end_step = end_step
        if rank is not None:
            req.rank = rank
        call = self.calls.GetMetricHistory
        resp = call(req, timeout=timeout, metadata=metadata)
        while True:
            following = None
            if resp.next_page_token:
                req.page_token = resp.next_page_token
                following = call.prefetch(req, timeout=timeout, metadata=metadata)
            try:
                yield from _points(resp.series)
            except BaseException:  # the caller stopped early: the next page is not wanted
                if following is not None:
                    following.cancel()
                raise
            if following is None:
                return
            resp = following.result()

    def get_metric_histories(
        self,
        run_ids: Sequence[str],
        keys: Sequence[str],
        *,
        max_points: int = 0,
        start_step: int | None = None,
        end_step: int | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> dict[tuple[str, str], list[MetricPoint]]:
        """Reads several runs' series in one call: {(run_id, key): [MetricPoint, ...]} for
        every run and key that has points in the step range, in request order, all ranks
        merged and ordered by step. At most 100 runs and 100 keys. ``max_points`` > 0
        downsamples each series as in ``get_metric_history``; with 0 every point comes, and
        more than 1,000,000 in all raises ResourceExhausted (reason HISTORY_TOO_LARGE)."""
        req = tpb.GetMetricHistoriesRequest(
            run_ids=list(run_ids), keys=list(keys), max_points=max_points
        )
        if start_step is not None:
            req.start_step = start_step
        if end_step is not None:
            req.end_step = end_step
        resp = self.calls.GetMetricHistories(req, timeout=timeout, metadata=metadata)
        return {(e.run_id, e.series.key): list(_points(e.series)) for e in resp.series}


def _points(series: pb.MetricSeries) -> Iterator[MetricPoint]:
    return map(_point, zip(series.steps, series.timestamps, series.values, strict=True))


def _view_type(name: str) -> tpb.ViewType:
    try:
        return _VIEW_TYPES[name]
    except KeyError:
        raise ValueError(f"view_type must be one of {sorted(_VIEW_TYPES)}, not {name!r}") from None


__all__ = ["MetricPoint", "TracklineClient", "ViewType"]
