"""Issue 9, findings 8-11 (errors): odd and hostile inputs get a clear status and reason, never
UNKNOWN, SQL, parameters or the store's path, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import pytest
from trackline import TracklineClient
from trackline._status import parse
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.refusals import new_run, refused
from tests.support.servers import ServerProcess

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    "exp_id",
    [str(2**63), str(2**63 - 1), str(2**31), "9" * 400, "²", "٣", "-1", " 1", "1\n", "1\x00"],
)
def test_experiment_id_that_cannot_exist_is_not_found(
    server: ServerProcess, client: TracklineClient, exp_id: str
) -> None:
    stub = client.stub
    for call, request in [
        (stub.GetExperiment, tpb.GetExperimentRequest(experiment_id=exp_id)),
        (stub.DeleteExperiment, tpb.DeleteExperimentRequest(experiment_id=exp_id)),
        (stub.UpdateExperiment, tpb.UpdateExperimentRequest(experiment_id=exp_id, new_name="n")),
        (stub.CreateRun, tpb.CreateRunRequest(experiment_id=exp_id)),
        (
            stub.SetExperimentTag,
            tpb.SetExperimentTagRequest(experiment_id=exp_id, key="k", value="v"),
        ),
    ]:
        assert refused(server, call, request) == (NOT_FOUND, "EXPERIMENT_NOT_FOUND")
    request = tpb.SearchRunsRequest(experiment_ids=[exp_id])
    if exp_id.isascii() and exp_id.isdigit():  # a number no experiment has: nothing matches
        assert list(stub.SearchRuns(request).runs) == []
    else:
        assert refused(server, stub.SearchRuns, request) == (INVALID, "INVALID_EXPERIMENT_ID")


def test_nul_in_stored_text_is_invalid_argument(
    server: ServerProcess, client: TracklineClient
) -> None:
    stub = client.stub
    exp_id, run_id = new_run(client)
    tag = [pb.Tag(key="k", value="a\x00b")]
    cases: list[tuple[Any, Any, str, str]] = [
        (stub.CreateExperiment, tpb.CreateExperimentRequest(name="a\x00b"), "INVALID_NAME", "name"),
        (
            stub.CreateExperiment,
            tpb.CreateExperimentRequest(name="x", artifact_location="/a\x00"),
            "INVALID_ARTIFACT_LOCATION",
            "artifact_location",
        ),
        (
            stub.CreateExperiment,
            tpb.CreateExperimentRequest(name="x", tags=tag),
            "INVALID_VALUE",
            "tags[0].value",
        ),
        (
            stub.CreateExperiment,
            tpb.CreateExperimentRequest(name="x", tags=[pb.Tag(key="k\x00", value="v")]),
            "INVALID_KEY",
            "tags[0].key",
        ),
        (
            stub.UpdateExperiment,
            tpb.UpdateExperimentRequest(experiment_id=exp_id, new_name="\x00"),
            "INVALID_NAME",
            "new_name",
        ),
        (
            stub.SetExperimentTag,
            tpb.SetExperimentTagRequest(experiment_id=exp_id, key="k", value="\x00"),
            "INVALID_VALUE",
            "value",
        ),
        (
            stub.CreateRun,
            tpb.CreateRunRequest(experiment_id=exp_id, run_name="r\x00"),
            "INVALID_NAME",
            "run_name",
        ),
        (
            stub.CreateRun,
            tpb.CreateRunRequest(experiment_id=exp_id, tags=tag),
            "INVALID_VALUE",
            "tags[0].value",
        ),
        (
            stub.UpdateRun,
            tpb.UpdateRunRequest(run_id=run_id, run_name="\x00"),
            "INVALID_NAME",
            "run_name",
        ),
        (
            stub.LogBatch,
            tpb.LogBatchRequest(run_id=run_id, params=[pb.Param(key="p", value="\x00")]),
            "INVALID_VALUE",
            "params[0].value",
        ),
        (
            stub.LogBatch,
            tpb.LogBatchRequest(run_id=run_id, tags=tag),
            "INVALID_VALUE",
            "tags[0].value",
        ),
        (
            stub.LogBatch,
            tpb.LogBatchRequest(run_id=run_id, request_id="r\x00", tags=[pb.Tag(key="k")]),
            "INVALID_REQUEST_ID",
            "request_id",
        ),
    ]
    for call, request, reason, field in cases:
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
        assert parse(info.value.trailing_metadata()).field_violations.keys() == {field}
        assert refused(server, call, request) == (INVALID, reason)
    assert len(client.get_run(run_id).tags) == 0  # nothing of the refused batches was stored


def test_nul_in_lookup_id_is_not_found(server: ServerProcess, client: TracklineClient) -> None:
    stub = client.stub
    exp_id, run_id = new_run(client)
    bad = run_id[:8] + "\x00"
    for call, request, reason in [
        (stub.GetRun, tpb.GetRunRequest(run_id=bad), "RUN_NOT_FOUND"),
        (stub.DeleteRun, tpb.DeleteRunRequest(run_id=bad), "RUN_NOT_FOUND"),
        (stub.RestoreRun, tpb.RestoreRunRequest(run_id=bad), "RUN_NOT_FOUND"),
        (stub.UpdateRun, tpb.UpdateRunRequest(run_id=bad, status=3), "RUN_NOT_FOUND"),
        (stub.LogBatch, tpb.LogBatchRequest(run_id=bad, tags=[pb.Tag(key="k")]), "RUN_NOT_FOUND"),
        (stub.DeleteRunTag, tpb.DeleteRunTagRequest(run_id=bad, key="k"), "RUN_NOT_FOUND"),
        (stub.DeleteRunTag, tpb.DeleteRunTagRequest(run_id=run_id, key="k\x00"), "TAG_NOT_FOUND"),
        (
            stub.DeleteExperimentTag,
            tpb.DeleteExperimentTagRequest(experiment_id=exp_id, key="\x00"),
            "TAG_NOT_FOUND",
        ),
        (
            stub.CreateRun,
            tpb.CreateRunRequest(experiment_id=exp_id, parent_run_id=bad),
            "RUN_NOT_FOUND",
        ),
        (
            stub.GetExperimentByName,
            tpb.GetExperimentByNameRequest(name="e\x00"),
            "EXPERIMENT_NOT_FOUND",
        ),
        (stub.GetMetricHistory, tpb.GetMetricHistoryRequest(run_id=bad, key="m"), "RUN_NOT_FOUND"),
        (
            stub.GetMetricHistories,
            tpb.GetMetricHistoriesRequest(run_ids=[run_id, bad], keys=["m"]),
            "RUN_NOT_FOUND",
        ),
    ]:
        assert refused(server, call, request) == (NOT_FOUND, reason)


def test_deeply_nested_page_token_is_invalid(
    server: ServerProcess, client: TracklineClient
) -> None:
    _, run_id = new_run(client)
    token = base64.urlsafe_b64encode(b"[" * 200_000).decode()
    stub = client.stub
    for call, request in [
        (
            stub.GetMetricHistory,
            tpb.GetMetricHistoryRequest(run_id=run_id, key="m", page_token=token),
        ),
        (stub.SearchRuns, tpb.SearchRunsRequest(page_token=token)),
        (stub.SearchExperiments, tpb.SearchExperimentsRequest(page_token=token)),
    ]:
        assert refused(server, call, request) == (INVALID, "INVALID_PAGE_TOKEN")


def test_long_echoed_values_give_short_messages(
    server: ServerProcess, client: TracklineClient
) -> None:
    stub = client.stub
    long_id = "r" * 10_000
    for call, request, code in [
        (stub.GetRun, tpb.GetRunRequest(run_id=long_id), NOT_FOUND),
        (stub.GetExperiment, tpb.GetExperimentRequest(experiment_id="1" * 10_000), NOT_FOUND),
        (stub.GetExperimentByName, tpb.GetExperimentByNameRequest(name=long_id), NOT_FOUND),
        (stub.GetMetricHistories, tpb.GetMetricHistoriesRequest(run_ids=[long_id]), NOT_FOUND),
        (stub.SearchRuns, tpb.SearchRunsRequest(experiment_ids=["²" * 10_000]), INVALID),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
        assert info.value.code() == code
        assert len(info.value.details()) < 200
        refused(server, call, request)


def test_history_reads_with_odd_inputs_get_a_clear_answer(
    server: ServerProcess, client: TracklineClient
) -> None:
    """Every odd history read is answered OK or with a known INVALID_ARGUMENT reason."""
    _, run_id = new_run(client)
    client.log_batch(
        run_id,
        metrics=[pb.MetricSeries(key="m", steps=[-(2**63), 0, 2**63 - 1], values=[1, 2, 3])],
    )
    big, small = 2**63 - 1, -(2**63)
    ok = [
        dict(start_step=small, end_step=big),
        dict(start_step=big, end_step=big),
        dict(start_step=small, end_step=small, max_points=3),
        dict(max_points=2**31 - 1),
        dict(max_points=1),
        dict(max_points=2, start_step=small, end_step=big),
        dict(page_size=2**31 - 1),
        dict(page_size=1),
        dict(rank=-1),
        dict(rank=2**31 - 1, max_points=5),
        dict(rank=-(2**31)),
    ]
    stub = client.stub
    for extra in ok:
        stub.GetMetricHistory(tpb.GetMetricHistoryRequest(run_id=run_id, key="m", **extra))
        if "page_size" not in extra and "rank" not in extra:
            stub.GetMetricHistories(
                tpb.GetMetricHistoriesRequest(run_ids=[run_id], keys=["m"], **extra)
            )
    one_page = stub.GetMetricHistory(tpb.GetMetricHistoryRequest(run_id=run_id, key="m"))
    assert list(one_page.series.steps) == [small, 0, big]
    page = stub.GetMetricHistory(tpb.GetMetricHistoryRequest(run_id=run_id, key="m", page_size=1))
    seen = list(page.series.steps)
    while page.next_page_token:
        page = stub.GetMetricHistory(
            tpb.GetMetricHistoryRequest(
                run_id=run_id, key="m", page_size=1, page_token=page.next_page_token
            )
        )
        seen += list(page.series.steps)
    assert seen == [small, 0, big]

    bad: list[tuple[dict[str, Any], str]] = [
        (dict(key=""), "INVALID_KEY"),
        (dict(key="m\x00"), "INVALID_KEY"),
        (dict(key="x" * 501), "INVALID_KEY"),
        (dict(key="m", page_size=-1), "INVALID_PAGE_SIZE"),
        (dict(key="m", page_size=-(2**31)), "INVALID_PAGE_SIZE"),
        (dict(key="m", max_points=-1), "INVALID_MAX_POINTS"),
        (dict(key="m", start_step=big, end_step=small), "INVALID_STEP_RANGE"),
        (dict(key="m", page_token="!!"), "INVALID_PAGE_TOKEN"),
    ]
    for fields, reason in bad:
        request = tpb.GetMetricHistoryRequest(run_id=run_id, **fields)
        assert refused(server, stub.GetMetricHistory, request) == (INVALID, reason)
    for fields, reason in [
        (dict(keys=[""]), "INVALID_KEY"),
        (dict(keys=["m", "\x00"]), "INVALID_KEY"),
        (dict(keys=["m"], max_points=-(2**31)), "INVALID_MAX_POINTS"),
        (dict(keys=["m"], start_step=1, end_step=0), "INVALID_STEP_RANGE"),
        (dict(keys=[str(i) for i in range(101)]), "TOO_MANY_KEYS"),
    ]:
        request = tpb.GetMetricHistoriesRequest(run_ids=[run_id], **fields)
        assert refused(server, stub.GetMetricHistories, request) == (INVALID, reason)


def test_writes_to_a_run_of_a_deleted_experiment_are_refused(
    server: ServerProcess, client: TracklineClient
) -> None:
    exp_id, run_id = new_run(client)
    client.log_batch(run_id, tags={"keep": "1"})
    client.delete_experiment(exp_id)
    stub = client.stub
    for call, request in [
        (stub.LogBatch, tpb.LogBatchRequest(run_id=run_id, tags=[pb.Tag(key="k", value="v")])),
        (
            stub.LogBatch,
            tpb.LogBatchRequest(run_id=run_id, metrics=[pb.MetricSeries(key="m", values=[1])]),
        ),
        (stub.DeleteRunTag, tpb.DeleteRunTagRequest(run_id=run_id, key="keep")),
        (stub.UpdateRun, tpb.UpdateRunRequest(run_id=run_id, status=pb.RUN_STATUS_FINISHED)),
    ]:
        assert refused(server, call, request) == (PRECONDITION, "EXPERIMENT_DELETED")
    client.restore_experiment(exp_id)
    run = client.get_run(run_id)
    assert [(t.key, t.value) for t in run.tags] == [("keep", "1")]
    assert len(run.latest_metrics) == 0 and run.status == pb.RUN_STATUS_RUNNING


def test_create_tags_are_checked_like_set_tag(
    server: ServerProcess, client: TracklineClient
) -> None:
    exp_id, _ = new_run(client)
    stub = client.stub
    long_value = [pb.Tag(key="k", value="v" * 65_537)]
    bad_key = [pb.Tag(key="", value="v")]
    for call, request, reason, field in [
        (
            stub.CreateExperiment,
            tpb.CreateExperimentRequest(name="x", tags=long_value),
            "VALUE_TOO_LONG",
            "tags[0].value",
        ),
        (
            stub.CreateRun,
            tpb.CreateRunRequest(experiment_id=exp_id, tags=long_value),
            "VALUE_TOO_LONG",
            "tags[0].value",
        ),
        (
            stub.CreateExperiment,
            tpb.CreateExperimentRequest(name="x", tags=bad_key),
            "INVALID_KEY",
            "tags[0].key",
        ),
        (
            stub.CreateRun,
            tpb.CreateRunRequest(experiment_id=exp_id, tags=bad_key),
            "INVALID_KEY",
            "tags[0].key",
        ),
        (
            stub.SetExperimentTag,
            tpb.SetExperimentTagRequest(experiment_id=exp_id, key="k", value="v" * 65_537),
            "VALUE_TOO_LONG",
            "value",
        ),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
        assert field in parse(info.value.trailing_metadata()).field_violations
        assert refused(server, call, request) == (INVALID, reason)
    assert [e.name for e in client.search_experiments()].count("x") == 0
    ok = [pb.Tag(key="k", value="v" * 65_536)]
    stub.CreateRun(tpb.CreateRunRequest(experiment_id=exp_id, tags=ok))


def test_update_run_status_outside_the_enum_is_invalid(
    server: ServerProcess, client: TracklineClient
) -> None:
    _, run_id = new_run(client)
    for status in (99, -5, 6, 2**31 - 1):
        request = tpb.UpdateRunRequest(run_id=run_id, status=status)  # type: ignore[arg-type]
        assert refused(server, client.stub.UpdateRun, request) == (INVALID, "INVALID_STATUS")
    assert client.get_run(run_id).status == pb.RUN_STATUS_RUNNING
    client.stub.UpdateRun(tpb.UpdateRunRequest(run_id=run_id, status=pb.RUN_STATUS_KILLED))
    assert client.get_run(run_id).status == pb.RUN_STATUS_KILLED
    assert list(client.search_runs([client.get_run(run_id).experiment_id]))  # lists still work


def test_run_times_outside_the_calendar_are_invalid(
    server: ServerProcess, client: TracklineClient
) -> None:
    exp_id, run_id = new_run(client, start_time=2_000)
    stub = client.stub
    for ms in (-1, 2**63 - 1, -(2**63), 253_402_300_800_000):
        request = tpb.CreateRunRequest(experiment_id=exp_id, start_time=ms)
        assert refused(server, stub.CreateRun, request) == (INVALID, "INVALID_TIME")
        request2 = tpb.UpdateRunRequest(run_id=run_id, end_time=ms)
        assert refused(server, stub.UpdateRun, request2) == (INVALID, "INVALID_TIME")
    last = 253_402_300_799_999
    assert stub.CreateRun(tpb.CreateRunRequest(experiment_id=exp_id, start_time=last)).run
    # An end before the start is accepted, as MLflow does.
    ended = stub.UpdateRun(tpb.UpdateRunRequest(run_id=run_id, end_time=1_000)).run
    assert (ended.start_time, ended.end_time) == (2_000, 1_000)
    assert len(list(client.search_runs([exp_id]))) == 2


def test_updating_a_deleted_run_is_refused(server: ServerProcess, client: TracklineClient) -> None:
    """Resuming (or ending) a deleted run fails instead of marking it FINISHED."""
    _, run_id = new_run(client)
    client.delete_run(run_id)
    stub = client.stub
    for status in (pb.RUN_STATUS_RUNNING, pb.RUN_STATUS_FINISHED):
        request = tpb.UpdateRunRequest(run_id=run_id, status=status)
        assert refused(server, stub.UpdateRun, request) == (PRECONDITION, "RUN_DELETED")
    client.restore_run(run_id)
    assert client.get_run(run_id).status == pb.RUN_STATUS_RUNNING
