"""TracklineClient: explicit ids for every TrackingService call, typed exceptions, retries."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Literal, TypeVar, cast

import grpc

from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from ._exceptions import from_rpc_error

T = TypeVar("T")
ViewType = Literal["active", "deleted", "all"]
_VIEW_TYPES = {
    "active": tpb.VIEW_TYPE_ACTIVE_ONLY,
    "deleted": tpb.VIEW_TYPE_DELETED_ONLY,
    "all": tpb.VIEW_TYPE_ALL,
}
DEFAULT_URI = "localhost:50051"
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
# Every channel of the client (calls and the metric stream) accepts the server's largest message.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class TracklineClient:
    """Synchronous client. The channel is created lazily per process, so a client inherited
    across ``fork`` opens a fresh channel in the child. UNAVAILABLE is retried with jittered
    exponential backoff for up to ``retry_seconds``; writes carry a ``request_id`` so a retry
    is applied once."""

    def __init__(
        self, uri: str | None = None, *, token: str | None = None, retry_seconds: float = 30.0
    ) -> None:
        self.uri = uri or os.environ.get("TRACKLINE_URI", DEFAULT_URI)
        self.token = token if token is not None else os.environ.get("TRACKLINE_TOKEN")
        self.retry_seconds = retry_seconds
        self._pid = -1
        self._channel: grpc.Channel | None = None
        self._stub: tracking_pb2_grpc.TrackingServiceStub | None = None

    @property
    def stub(self) -> tracking_pb2_grpc.TrackingServiceStub:
        """The generated stub: the escape hatch for anything the wrapper does not cover."""
        if self._stub is None or self._pid != os.getpid():
            self._channel = grpc.insecure_channel(
                self.uri,
                options=CHANNEL_OPTIONS,
            )
            self._stub = tracking_pb2_grpc.TrackingServiceStub(self._channel)
            self._pid = os.getpid()
        return self._stub

    def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            self._channel.close()
        self._channel = self._stub = None

    def _call(self, method: Callable[..., T], request: Any) -> T:
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                return method(request, metadata=metadata, timeout=60)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:  # type: ignore[attr-defined]
                    raise from_rpc_error(err) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

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
        resp = self._call(self.stub.CreateExperiment, req)
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
        return islice(pages, max_results)

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
        resp = self._call(self.stub.CreateRun, req)
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
            run_view_type=_view_type(view_type),
        )
        return islice(self._pages(self.stub.SearchRuns, req, "runs"), max_results)

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
        self._call(self.stub.DeleteTag, tpb.DeleteTagRequest(run_id=run_id, key=key))

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
                metadata = [("authorization", f"Bearer {self.token}")] if self.token else None
                following = method.future(req, metadata=metadata, timeout=60)
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


def _view_type(name: str) -> tpb.ViewType:
    try:
        return _VIEW_TYPES[name]
    except KeyError:
        raise ValueError(f"view_type must be one of {sorted(_VIEW_TYPES)}, not {name!r}") from None


__all__ = ["TracklineClient", "ViewType"]
