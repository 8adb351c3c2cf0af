"""TrackingService servicer: proto <-> store calls, one unit of work per RPC, nothing else."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from .. import limits, validation
from ..database import Database
from ..errors import InvalidArgument, from_exception, grpc_status
from ..metrics import downsample, history_wire, reads, segments
from ..metrics.compactor import Compactor
from ..metrics.writer import GroupCommitWriter, Job
from ..shield import shielded
from . import search as queries
from . import store

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def rpc(
    fn: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Ends the call with the status of any exception it raises (``errors.from_exception``:
    a domain error with its ErrorInfo/BadRequest details, anything else as INTERNAL).

    The handler runs to its end even when the client goes away: grpc.aio cancels the call's
    task then, and a cancellation that lands inside a SQLite statement left the connection
    holding the write lock, so that every later write waited out the busy timeout and
    failed (``shielded``)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await shielded(fn(self, request, context))
        except Exception as exc:
            status = grpc_status(from_exception(exc, fn.__name__))
        # Aborted outside the handler: gRPC's AbortError would otherwise chain the exception,
        # whose traceback holds the request, into a cycle only a full collection frees.
        await context.abort_with_status(status)
        raise AssertionError("unreachable")

    return wrapper


def experiment_pb(e: store.ExperimentRow) -> pb.Experiment:
    return pb.Experiment(
        experiment_id=str(e.experiment_id),
        name=e.name,
        artifact_location=e.artifact_location,
        lifecycle_stage=cast(pb.LifecycleStage, e.lifecycle_stage),
        creation_time=e.creation_time,
        last_update_time=e.last_update_time,
        tags=[pb.Tag(key=k, value=v) for k, v in sorted(e.tags.items())],
    )


def run_pb(r: store.RunRow) -> pb.Run:
    msg = pb.Run(
        run_id=r.run_id,
        experiment_id=str(r.experiment_id),
        run_name=r.run_name,
        status=cast(pb.RunStatus, r.status),
        start_time=r.start_time,
        lifecycle_stage=cast(pb.LifecycleStage, r.lifecycle_stage),
        parent_run_id=r.parent_run_id or "",
        artifact_uri=r.artifact_uri,
        params=[pb.Param(key=k, value=v) for k, v in sorted(r.params.items())],
        tags=[pb.Tag(key=k, value=v) for k, v in sorted(r.tags.items())],
        latest_metrics=[
            pb.Metric(key=k, value=v, step=s, timestamp=t)
            for k, v, s, t in sorted(r.latest_metrics)
        ],
    )
    if r.end_time is not None:
        msg.end_time = r.end_time
    return msg


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):  # type: ignore[misc]
    def __init__(
        self, db: Database, writer: GroupCommitWriter, compactor: Compactor, artifact_root: str
    ) -> None:
        self.db = db
        self.writer = writer
        self.compactor = compactor
        self.artifact_root = artifact_root

    @rpc
    async def CreateExperiment(
        self, request: tpb.CreateExperimentRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CreateExperimentResponse:
        async with self.db.write() as conn:
            exp = await store.create_experiment(
                conn,
                request.name,
                request.artifact_location,
                {t.key: t.value for t in request.tags},
                self.artifact_root,
            )
        return tpb.CreateExperimentResponse(experiment=experiment_pb(exp))

    @rpc
    async def GetExperiment(
        self, request: tpb.GetExperimentRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.read() as conn:
            exp = await store.get_experiment(conn, exp_id)
        return tpb.GetExperimentResponse(experiment=experiment_pb(exp))

    @rpc
    async def GetExperimentByName(
        self, request: tpb.GetExperimentByNameRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetExperimentByNameResponse:
        async with self.db.read() as conn:
            exp = await store.get_experiment_by_name(conn, request.name)
        return tpb.GetExperimentByNameResponse(experiment=experiment_pb(exp))

    @rpc
    async def CreateRun(
        self, request: tpb.CreateRunRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CreateRunResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id or "0")
        async with self.db.write() as conn:
            run = await store.create_run(
                conn,
                exp_id,
                request.run_name,
                request.start_time,
                {t.key: t.value for t in request.tags},
                request.parent_run_id,
            )
        return tpb.CreateRunResponse(run=run_pb(run))

    @rpc
    async def GetRun(
        self, request: tpb.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetRunResponse:
        async with self.db.read() as conn:
            run = await store.get_run(conn, request.run_id)
        return tpb.GetRunResponse(run=run_pb(run))

    @rpc
    async def UpdateRun(
        self, request: tpb.UpdateRunRequest, context: grpc.aio.ServicerContext
    ) -> tpb.UpdateRunResponse:
        async with self.db.write() as conn:
            run = await store.update_run(
                conn,
                request.run_id,
                request.status,
                request.end_time if request.HasField("end_time") else None,
                request.run_name if request.HasField("run_name") else None,
            )
        return tpb.UpdateRunResponse(run=run_pb(run))

    @rpc
    async def LogBatch(
        self, request: tpb.LogBatchRequest, context: grpc.aio.ServicerContext
    ) -> tpb.LogBatchResponse:
        # Everything checkable without the database is checked here, before the batch joins
        # a group commit whose other batches it could otherwise fail.
        if not validation.findable(request.run_id):
            raise store.run_not_found(request.run_id)
        points = segments.from_series(
            request.metrics, store.now_ms(), "metrics", run_id=request.run_id
        )
        validation.check_request_id(request.request_id)
        if len(request.params) + len(request.tags) > limits.MAX_BATCH_PARAMS_AND_TAGS:
            raise InvalidArgument(
                "BATCH_TOO_LARGE",
                f"more than {limits.MAX_BATCH_PARAMS_AND_TAGS} params and tags in one batch",
                "params",
            )
        validation.check_params((p.key, p.value) for p in request.params)
        validation.check_tags((t.key, t.value) for t in request.tags)

        async def apply(conn: AsyncConnection) -> None:
            await store.log_batch(
                conn,
                request.run_id,
                points,
                [(p.key, p.value) for p in request.params],
                [(t.key, t.value) for t in request.tags],
                request.request_id,
            )

        # Joins the group commit: committed with every other pending write, acked after it.
        await self.writer.put_job(Job(apply, points.points, points.nbytes + request.ByteSize()))
        return tpb.LogBatchResponse()

    @rpc
    async def GetMetricHistory(
        self, request: tpb.GetMetricHistoryRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetMetricHistoryResponse:
        rank = request.rank if request.HasField("rank") else None
        start = request.start_step if request.HasField("start_step") else None
        end = request.end_step if request.HasField("end_step") else None
        validation.check_key(request.key, "key")
        token = ""
        await self.compactor.settle()  # points still in the metric log move to chunks
        async with self.db.read() as conn:
            if request.max_points:  # a chart view in one response (negative: rejected)
                points = await downsample.downsample(
                    conn, request.run_id, request.key, rank=rank, start_step=start,
                    end_step=end, max_points=request.max_points,
                )  # fmt: skip
            else:
                points, token = await reads.history_page(
                    conn, request.run_id, request.key, rank=rank, start_step=start,
                    end_step=end, page_size=request.page_size, page_token=request.page_token,
                )  # fmt: skip
        response = tpb.GetMetricHistoryResponse(next_page_token=token)
        history_wire.fill_series(response.series, request.key, points)
        history_wire.extend_ints(response, "ranks", points.ranks)
        return response

    @rpc
    async def GetMetricHistories(
        self, request: tpb.GetMetricHistoriesRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetMetricHistoriesResponse:
        for i, key in enumerate(request.keys):
            validation.check_key(key, f"keys[{i}]")
        await self.compactor.settle()  # points still in the metric log move to chunks
        async with self.db.read() as conn:
            found = await reads.histories(
                conn,
                list(request.run_ids),
                list(request.keys),
                max_points=request.max_points,
                start_step=request.start_step if request.HasField("start_step") else None,
                end_step=request.end_step if request.HasField("end_step") else None,
            )
        response = tpb.GetMetricHistoriesResponse()
        for run_id, key, points in found:
            history_wire.fill_series(response.series.add(run_id=run_id).series, key, points)
        return response

    @rpc
    async def DeleteExperiment(
        self, request: tpb.DeleteExperimentRequest, context: grpc.aio.ServicerContext
    ) -> tpb.DeleteExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.write() as conn:
            await store.set_experiment_stage(conn, exp_id, store.DELETED)
        return tpb.DeleteExperimentResponse()

    @rpc
    async def RestoreExperiment(
        self, request: tpb.RestoreExperimentRequest, context: grpc.aio.ServicerContext
    ) -> tpb.RestoreExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.write() as conn:
            await store.set_experiment_stage(conn, exp_id, store.ACTIVE)
        return tpb.RestoreExperimentResponse()

    @rpc
    async def DeleteRun(
        self, request: tpb.DeleteRunRequest, context: grpc.aio.ServicerContext
    ) -> tpb.DeleteRunResponse:
        async with self.db.write() as conn:
            await store.set_run_stage(conn, request.run_id, store.DELETED)
        return tpb.DeleteRunResponse()

    @rpc
    async def RestoreRun(
        self, request: tpb.RestoreRunRequest, context: grpc.aio.ServicerContext
    ) -> tpb.RestoreRunResponse:
        async with self.db.write() as conn:
            await store.set_run_stage(conn, request.run_id, store.ACTIVE)
        return tpb.RestoreRunResponse()

    @rpc
    async def DeleteRunTag(
        self, request: tpb.DeleteRunTagRequest, context: grpc.aio.ServicerContext
    ) -> tpb.DeleteRunTagResponse:
        async with self.db.write() as conn:
            await store.delete_tag(conn, request.run_id, request.key)
        return tpb.DeleteRunTagResponse()

    @rpc
    async def SearchExperiments(
        self, request: tpb.SearchExperimentsRequest, context: grpc.aio.ServicerContext
    ) -> tpb.SearchExperimentsResponse:
        async with self.db.read() as conn:
            found, token = await queries.search_experiments(
                conn,
                request.filter,
                list(request.order_by),
                request.page_size,
                request.page_token,
                request.view_type,
            )
        return tpb.SearchExperimentsResponse(
            experiments=[experiment_pb(e) for e in found], next_page_token=token
        )

    @rpc
    async def UpdateExperiment(
        self, request: tpb.UpdateExperimentRequest, context: grpc.aio.ServicerContext
    ) -> tpb.UpdateExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.write() as conn:
            exp = await store.rename_experiment(conn, exp_id, request.new_name)
        return tpb.UpdateExperimentResponse(experiment=experiment_pb(exp))

    @rpc
    async def SetExperimentTag(
        self, request: tpb.SetExperimentTagRequest, context: grpc.aio.ServicerContext
    ) -> tpb.SetExperimentTagResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.write() as conn:
            await store.set_experiment_tag(conn, exp_id, request.key, request.value)
        return tpb.SetExperimentTagResponse()

    @rpc
    async def DeleteExperimentTag(
        self, request: tpb.DeleteExperimentTagRequest, context: grpc.aio.ServicerContext
    ) -> tpb.DeleteExperimentTagResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.write() as conn:
            await store.delete_experiment_tag(conn, exp_id, request.key)
        return tpb.DeleteExperimentTagResponse()

    @rpc
    async def SearchRuns(
        self, request: tpb.SearchRunsRequest, context: grpc.aio.ServicerContext
    ) -> tpb.SearchRunsResponse:
        async with self.db.read() as conn:
            found, token = await queries.search_runs(
                conn,
                list(request.experiment_ids),
                request.filter,
                list(request.order_by),
                request.page_size,
                request.page_token,
                request.view_type,
            )
        return tpb.SearchRunsResponse(runs=[run_pb(r) for r in found], next_page_token=token)


__all__ = ["TrackingServicer"]
