"""TrackingService: experiments, runs, their params and tags, metric reads and run search,
written once for every transport (the gRPC edge in ``transport/grpc_server.py`` now, the
Connect side later).

Each method takes the request and a ``Call``; ``@reads``/``@writes`` methods run inside the
unit of work the edge opened (``call.reader``, a snapshot; ``call.conn``, a write transaction)
and never commit. LogBatch hands its write to the group-commit writer, which commits it with
every other pending write (``@own_transactions``: no transaction of its own); metric reads
first let the compactor settle what is still in the metric log.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import tracking_pb2 as tpb

from .. import idempotency, lifecycle, limits, validation
from ..clock import now_ms
from ..database import Database
from ..errors import InvalidArgument
from ..metrics import blocks, downsample, history_wire, reads
from ..metrics.compactor import Compactor
from ..metrics.writer import GroupCommitWriter, Job
from ..transport import Call, own_transactions, writes
from ..transport import reads as reading
from . import datasets, experiments, messages, runs, search


class TrackingService:
    def __init__(
        self,
        db: Database,
        writer: GroupCommitWriter,
        compactor: Compactor,
        artifact_root: str,
        on_rename: Callable[[], None],
    ) -> None:
        """``on_rename`` is called after an experiment's rename commits (what the scope
        checks keep of experiment names is stale then)."""
        self.db = db
        self.writer = writer
        self.compactor = compactor
        self.artifact_root = artifact_root
        self.on_rename = on_rename

    # Experiments

    @writes
    async def create_experiment(
        self, request: tpb.CreateExperimentRequest, call: Call
    ) -> tpb.CreateExperimentResponse:
        conn, rid = call.conn, request.request_id
        validation.check_request_id(rid)
        done = rid and await idempotency.applied(conn, rid, "CreateExperiment")
        if done:
            exp_id = int(done)
        else:
            exp_id = await experiments.create(
                conn,
                request.name,
                request.artifact_location,
                {t.key: t.value for t in request.tags},
                self.artifact_root,
            )
            if rid:
                await idempotency.record(conn, rid, "CreateExperiment", str(exp_id))
        exp = await experiments.get(conn, exp_id)
        return tpb.CreateExperimentResponse(experiment=messages.experiment(exp))

    @reading
    async def get_experiment(
        self, request: tpb.GetExperimentRequest, call: Call
    ) -> tpb.GetExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        exp = await experiments.get(call.reader, exp_id)
        return tpb.GetExperimentResponse(experiment=messages.experiment(exp))

    @reading
    async def get_experiment_by_name(
        self, request: tpb.GetExperimentByNameRequest, call: Call
    ) -> tpb.GetExperimentByNameResponse:
        exp = await experiments.get_by_name(call.reader, request.name)
        return tpb.GetExperimentByNameResponse(experiment=messages.experiment(exp))

    @own_transactions
    async def update_experiment(
        self, request: tpb.UpdateExperimentRequest, call: Call
    ) -> tpb.UpdateExperimentResponse:
        """A rename, in its own transaction: ``on_rename`` must follow its commit."""
        exp_id = validation.parse_experiment_id(request.experiment_id)
        async with self.db.write() as conn:
            await experiments.rename(conn, exp_id, request.new_name)
            exp = await experiments.get(conn, exp_id)
        self.on_rename()
        return tpb.UpdateExperimentResponse(experiment=messages.experiment(exp))

    @writes
    async def delete_experiment(
        self, request: tpb.DeleteExperimentRequest, call: Call
    ) -> tpb.DeleteExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        await experiments.set_stage(call.conn, exp_id, lifecycle.DELETED)
        return tpb.DeleteExperimentResponse()

    @writes
    async def restore_experiment(
        self, request: tpb.RestoreExperimentRequest, call: Call
    ) -> tpb.RestoreExperimentResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        await experiments.set_stage(call.conn, exp_id, lifecycle.ACTIVE)
        return tpb.RestoreExperimentResponse()

    @writes
    async def set_experiment_tag(
        self, request: tpb.SetExperimentTagRequest, call: Call
    ) -> tpb.SetExperimentTagResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        await experiments.set_tag(call.conn, exp_id, request.key, request.value)
        return tpb.SetExperimentTagResponse()

    @writes
    async def delete_experiment_tag(
        self, request: tpb.DeleteExperimentTagRequest, call: Call
    ) -> tpb.DeleteExperimentTagResponse:
        exp_id = validation.parse_experiment_id(request.experiment_id)
        await experiments.delete_tag(call.conn, exp_id, request.key)
        return tpb.DeleteExperimentTagResponse()

    @reading
    async def search_experiments(
        self, request: tpb.SearchExperimentsRequest, call: Call
    ) -> tpb.SearchExperimentsResponse:
        found, token = await search.search_experiments(
            call.reader,
            request.filter,
            list(request.order_by),
            request.page_size,
            request.page_token,
            request.view_type,
            call.principal.experiments,
        )
        return tpb.SearchExperimentsResponse(
            experiments=[messages.experiment(e) for e in found], next_page_token=token
        )

    # Runs

    @writes
    async def create_run(self, request: tpb.CreateRunRequest, call: Call) -> tpb.CreateRunResponse:
        conn, rid = call.conn, request.request_id
        validation.check_request_id(rid)
        exp_id = validation.parse_experiment_id(request.experiment_id or "0")
        run_id = rid and await idempotency.applied(conn, rid, "CreateRun")
        if not run_id:
            run_id = await runs.create(
                conn,
                exp_id,
                request.run_name,
                request.start_time,
                {t.key: t.value for t in request.tags},
                request.parent_run_id,
                # Who started it: the token's name, when the call has one; else the client's word
                call.principal.author or request.user_id,
            )
            if rid:
                await idempotency.record(conn, rid, "CreateRun", run_id)
        return tpb.CreateRunResponse(run=await runs.get(conn, run_id))

    @reading
    async def get_run(self, request: tpb.GetRunRequest, call: Call) -> tpb.GetRunResponse:
        return tpb.GetRunResponse(run=await runs.get(call.reader, request.run_id))

    @writes
    async def update_run(self, request: tpb.UpdateRunRequest, call: Call) -> tpb.UpdateRunResponse:
        await runs.update_run(
            call.conn,
            request.run_id,
            request.status,
            request.end_time if request.HasField("end_time") else None,
            request.run_name if request.HasField("run_name") else None,
        )
        return tpb.UpdateRunResponse(run=await runs.get(call.conn, request.run_id))

    @writes
    async def delete_run(self, request: tpb.DeleteRunRequest, call: Call) -> tpb.DeleteRunResponse:
        await runs.set_stage(call.conn, request.run_id, lifecycle.DELETED)
        return tpb.DeleteRunResponse()

    @writes
    async def restore_run(
        self, request: tpb.RestoreRunRequest, call: Call
    ) -> tpb.RestoreRunResponse:
        await runs.set_stage(call.conn, request.run_id, lifecycle.ACTIVE)
        return tpb.RestoreRunResponse()

    @writes
    async def delete_run_tag(
        self, request: tpb.DeleteRunTagRequest, call: Call
    ) -> tpb.DeleteRunTagResponse:
        await runs.delete_tag(call.conn, request.run_id, request.key)
        return tpb.DeleteRunTagResponse()

    @reading
    async def search_runs(
        self, request: tpb.SearchRunsRequest, call: Call
    ) -> tpb.SearchRunsResponse:
        response = tpb.SearchRunsResponse()
        response.next_page_token = await search.search_runs(
            call.reader,
            list(request.experiment_ids),
            request.filter,
            list(request.order_by),
            request.page_size,
            request.page_token,
            request.view_type,
            response.runs,
            list(request.read_mask.paths),
            call.principal.experiments,
        )
        return response

    @writes
    async def log_inputs(self, request: tpb.LogInputsRequest, call: Call) -> tpb.LogInputsResponse:
        """Records datasets as inputs of the run (``datasets.log``); with a request_id, a
        retry (of the same run) is applied once."""
        conn, run_id, rid = call.conn, request.run_id, request.request_id
        validation.check_request_id(rid)
        inputs = datasets.checked(request.datasets)
        run = await runs.get_active(conn, run_id)
        done = rid and await idempotency.applied(conn, rid, "LogInputs")
        if done and done != run_id:
            raise idempotency.reused(rid, "another run")
        if not done:
            await datasets.log(conn, run_id, run.experiment_id, inputs)
            if rid:
                await idempotency.record(conn, rid, "LogInputs", run_id)
        return tpb.LogInputsResponse()

    @own_transactions
    async def log_batch(self, request: tpb.LogBatchRequest, call: Call) -> tpb.LogBatchResponse:
        """Checks everything it can without the database first, so that a bad call never
        joins a group commit whose other writes it could fail; then the writer applies it in
        a savepoint of its next flush, writes its points with the flush's others, and this
        returns once that commits."""
        run_id, rid = request.run_id, request.request_id
        if not validation.findable(run_id):
            raise runs.not_found(run_id)
        if len(request.params) + len(request.tags) > limits.MAX_BATCH_PARAMS_AND_TAGS:
            raise InvalidArgument(
                "BATCH_TOO_LARGE",
                f"more than {limits.MAX_BATCH_PARAMS_AND_TAGS} params and tags in one batch",
                "params",
            )
        problems = validation.Problems()  # every problem of the batch, in one refusal
        points = blocks.from_metric_series(request.metrics, run_id, now_ms(), problems)
        problems.check(validation.check_request_id, rid)
        param_pairs = [(p.key, p.value) for p in request.params]
        tag_pairs = [(t.key, t.value) for t in request.tags]
        validation.check_params(param_pairs, problems=problems)
        validation.check_tags(tag_pairs, problems=problems)
        problems.raise_if_any()

        async def apply(conn: AsyncConnection) -> bool:
            await runs.get_active(conn, run_id)
            if rid:
                done = await idempotency.applied(conn, rid, "LogBatch")
                if done is not None and done != run_id:
                    raise idempotency.reused(rid, "another run")
                if done is not None:
                    return False  # the retry of a batch that was applied: points skipped
                await idempotency.record(conn, rid, "LogBatch", run_id)
            await runs.log_params_and_tags(conn, run_id, param_pairs, tag_pairs)
            return True

        # Points alone: the writer checks the run and the request id with the flush's others.
        if param_pairs or tag_pairs:
            job = Job(run_id, apply, points, request.ByteSize())
        else:
            job = Job(run_id, None, points, request.ByteSize(), request_id=rid)
        await self.writer.put_job(job)
        return tpb.LogBatchResponse()

    # Metric reads

    @own_transactions
    async def get_metric_history(
        self, request: tpb.GetMetricHistoryRequest, call: Call
    ) -> tpb.GetMetricHistoryResponse:
        rank = request.rank if request.HasField("rank") else None
        start = request.start_step if request.HasField("start_step") else None
        end = request.end_step if request.HasField("end_step") else None
        validation.check_key(request.key, "key")
        token = ""
        await self.compactor.settle()  # points still in the metric log move to chunks
        async with self.db.read() as conn:
            await runs.get_row(conn, request.run_id)
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

    @own_transactions
    async def get_metric_histories(
        self, request: tpb.GetMetricHistoriesRequest, call: Call
    ) -> tpb.GetMetricHistoriesResponse:
        problems = validation.Problems()
        for i, key in enumerate(request.keys):
            problems.check(validation.check_key, key, f"keys[{i}]")
        problems.raise_if_any()
        run_ids, keys = list(request.run_ids), list(request.keys)
        start = request.start_step if request.HasField("start_step") else None
        end = request.end_step if request.HasField("end_step") else None
        reads.check_histories(run_ids, keys, max_points=request.max_points, start_step=start,
                              end_step=end)  # fmt: skip
        await self.compactor.settle()  # points still in the metric log move to chunks
        async with self.db.read() as conn:
            for i, run_id in enumerate(run_ids):  # at most MAX_HISTORIES_RUNS lookups
                await runs.get_row(conn, run_id, f"run_ids[{i}]")
            found = await reads.histories(conn, run_ids, keys, max_points=request.max_points,
                                          start_step=start, end_step=end)  # fmt: skip
        response = tpb.GetMetricHistoriesResponse()
        for run_id, key, points in found:
            history_wire.fill_series(response.series.add(run_id=run_id).series, key, points)
        return response
