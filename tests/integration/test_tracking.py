"""TrackingService through the Python client against a real server."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from trackline import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, TracklineClient
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.servers import ServerProcess


def test_default_experiment_exists(client: TracklineClient) -> None:
    assert client.get_experiment("0").name == "Default"


def test_create_and_get_experiment(client: TracklineClient) -> None:
    exp = client.create_experiment("vision ✓", tags={"team": "cv"})
    assert client.get_experiment(exp.experiment_id) == exp
    assert client.get_experiment_by_name("vision ✓") == exp
    assert exp.lifecycle_stage == pb.LIFECYCLE_STAGE_ACTIVE
    assert [(t.key, t.value) for t in exp.tags] == [("team", "cv")]
    assert exp.artifact_location.endswith(f"/{exp.experiment_id}")


def test_duplicate_experiment_name(client: TracklineClient) -> None:
    client.create_experiment("dup")
    with pytest.raises(AlreadyExists) as info:
        client.create_experiment("dup")
    assert info.value.reason == "EXPERIMENT_ALREADY_EXISTS"


@pytest.mark.parametrize("name", ["", "   ", "x" * 501])
def test_bad_experiment_name(client: TracklineClient, name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.create_experiment(name)
    assert info.value.reason == "INVALID_NAME"
    assert "name" in info.value.field_violations


@pytest.mark.parametrize("exp_id", ["999", "abc", "-1", ""])
def test_unknown_experiment(client: TracklineClient, exp_id: str) -> None:
    with pytest.raises(NotFound) as info:
        client.get_experiment(exp_id)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.reason == "EXPERIMENT_NOT_FOUND"


def test_run_lifecycle(client: TracklineClient) -> None:
    exp = client.create_experiment("e")
    parent = client.create_run(exp.experiment_id, run_name="parent", tags={"a": "1"})
    child = client.create_run(exp.experiment_id, parent_run_id=parent.run_id)
    assert child.parent_run_id == parent.run_id
    assert parent.status == pb.RUN_STATUS_RUNNING
    assert not parent.HasField("end_time")
    assert child.run_name.startswith("run-")
    done = client.update_run(
        parent.run_id, status=pb.RUN_STATUS_FINISHED, end_time=123, run_name="renamed"
    )
    assert (done.status, done.end_time, done.run_name) == (pb.RUN_STATUS_FINISHED, 123, "renamed")
    assert client.get_run(parent.run_id) == done


def test_create_run_bad_references(client: TracklineClient) -> None:
    with pytest.raises(NotFound):
        client.create_run("424242")
    with pytest.raises(NotFound) as info:
        client.create_run("0", parent_run_id="nope")
    assert info.value.reason == "RUN_NOT_FOUND"
    assert "parent_run_id" in info.value.field_violations
    with pytest.raises(NotFound):
        client.get_run("f" * 32)


def test_params_are_immutable(client: TracklineClient) -> None:
    run = client.create_run()
    client.log_param(run.run_id, "lr", 0.1)
    client.log_param(run.run_id, "lr", 0.1)  # same value again is fine
    with pytest.raises(InvalidArgument) as info:
        client.log_param(run.run_id, "lr", 0.2)
    assert info.value.reason == "PARAM_CONFLICT"
    assert "0.1" in info.value.message and "0.2" in info.value.message
    assert {p.key: p.value for p in client.get_run(run.run_id).params} == {"lr": "0.1"}


def test_log_batch_is_atomic(client: TracklineClient) -> None:
    run = client.create_run()
    client.log_param(run.run_id, "opt", "adam")
    series = pb.MetricSeries(key="loss", steps=[1], timestamps=[1], values=[0.5])
    with pytest.raises(InvalidArgument):
        client.log_batch(run.run_id, metrics=[series], params={"opt": "sgd"}, tags={"t": "x"})
    after = client.get_run(run.run_id)
    assert list(after.latest_metrics) == [] and list(after.tags) == []


def test_tags_overwrite(client: TracklineClient) -> None:
    run = client.create_run()
    client.set_tag(run.run_id, "stage", "a")
    client.set_tag(run.run_id, "stage", "b")
    assert {t.key: t.value for t in client.get_run(run.run_id).tags} == {"stage": "b"}


def test_nan_and_infinity_round_trip(client: TracklineClient) -> None:
    run = client.create_run()
    values = [math.nan, math.inf, -math.inf, 1e308, -0.0]
    client.log_batch(
        run.run_id,
        metrics=[pb.MetricSeries(key="x", steps=list(range(5)), timestamps=[1] * 5, values=values)],
    )
    got = [v for _, _, v in client.get_metric_history(run.run_id, "x")]
    assert math.isnan(got[0]) and got[1:] == values[1:]
    assert math.copysign(1, got[4]) == -1
    client.log_metric(run.run_id, "y", math.nan, step=3)
    latest = {m.key: m.value for m in client.get_run(run.run_id).latest_metrics}
    assert latest["x"] == 0.0 and math.isnan(latest["y"])


def test_latest_metric_is_highest_step(client: TracklineClient) -> None:
    run = client.create_run()
    client.log_metric(run.run_id, "acc", 0.9, step=10, timestamp=5)
    client.log_metric(run.run_id, "acc", 0.1, step=2, timestamp=9)
    (m,) = client.get_run(run.run_id).latest_metrics
    assert (m.value, m.step) == (0.9, 10)


def test_history_pages_in_step_order(client: TracklineClient) -> None:
    run = client.create_run()
    for start in (500, 0, 250):  # written out of order
        client.log_batch(
            run.run_id,
            metrics=[
                pb.MetricSeries(
                    key="loss",
                    steps=list(range(start, start + 250)),
                    timestamps=[7] * 250,
                    values=[float(s) for s in range(start, start + 250)],
                )
            ],
        )
    points = list(client.get_metric_history(run.run_id, "loss", page_size=100))
    assert [s for s, _, _ in points] == list(range(750))
    assert all(v == float(s) for s, _, v in points)


def test_history_rejects_bad_token_and_page_size(client: TracklineClient) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.calls.GetMetricHistory(
            tpb.GetMetricHistoryRequest(run_id=run.run_id, key="loss", page_token="garbage"),
        )
    assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument):
        list(client.get_metric_history(run.run_id, "loss", page_size=-1))


@pytest.mark.parametrize(
    ("series", "field"),
    [
        (pb.MetricSeries(key="k", steps=[1, 2], values=[1.0]), "metrics[0].steps"),
        (pb.MetricSeries(key="k", timestamps=[1], values=[1.0, 2.0]), "metrics[0].timestamps"),
        (pb.MetricSeries(key="", values=[1.0]), "metrics[0].key"),
        (pb.MetricSeries(key="bad\nkey", values=[1.0]), "metrics[0].key"),
        (pb.MetricSeries(key="k" * 501, values=[1.0]), "metrics[0].key"),
    ],
)
def test_bad_metric_batches(client: TracklineClient, series: pb.MetricSeries, field: str) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.log_batch(run.run_id, metrics=[series])
    assert field in info.value.field_violations


def test_too_long_param_value(client: TracklineClient) -> None:
    run = client.create_run()
    client.log_param(run.run_id, "ok", "v" * 65536)
    with pytest.raises(InvalidArgument) as info:
        client.log_param(run.run_id, "big", "v" * 65537)
    assert info.value.reason == "VALUE_TOO_LONG"


def test_unknown_run_write(client: TracklineClient) -> None:
    with pytest.raises(NotFound):
        client.log_metric("0" * 32, "loss", 1.0)


def test_retried_log_batch_is_applied_once(client: TracklineClient) -> None:
    run = client.create_run()
    req = tpb.LogBatchRequest(
        run_id=run.run_id,
        metrics=[pb.MetricSeries(key="loss", steps=[1, 2], timestamps=[1, 1], values=[0.1, 0.2])],
        tags=[pb.Tag(key="t", value="v")],
        request_id="retry-me",
    )
    client.calls.LogBatch(req)
    client.calls.LogBatch(req)  # a retry after a lost response
    assert len(list(client.get_metric_history(run.run_id, "loss"))) == 2
    other = client.create_run()
    req.run_id = other.run_id
    with pytest.raises(InvalidArgument) as info:
        client.calls.LogBatch(req)
    assert info.value.reason == "REQUEST_ID_REUSED"
    req.request_id = "x" * 129
    with pytest.raises(InvalidArgument) as info:
        client.calls.LogBatch(req)
    assert info.value.reason == "INVALID_REQUEST_ID"


@pytest.mark.parametrize("with_tags", [False, True], ids=["points-only", "with-tags"])
def test_concurrent_attempts_of_one_request_apply_once(
    client: TracklineClient, with_tags: bool
) -> None:
    """Eight attempts of one LogBatch sent at once (most share a flush): one applies, the
    others find it applied; the id then used on another run, or first by CreateRun, is
    REQUEST_ID_REUSED. Points-only calls are checked by the writer in bulk, the others in
    their savepoints: the answers are the same."""
    run = client.create_run()
    tags = [pb.Tag(key="t", value="v")] if with_tags else []
    req = tpb.LogBatchRequest(
        run_id=run.run_id,
        metrics=[pb.MetricSeries(key="loss", steps=[1, 2], timestamps=[1, 1], values=[0.1, 0.2])],
        tags=tags,
        request_id=f"attempt-{with_tags}",
    )
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client.calls.LogBatch(req), range(8)))
    assert len(list(client.get_metric_history(run.run_id, "loss"))) == 2
    req.run_id = client.create_run().run_id
    with pytest.raises(InvalidArgument) as info:
        client.calls.LogBatch(req)
    assert info.value.reason == "REQUEST_ID_REUSED"
    client.calls.CreateRun(tpb.CreateRunRequest(request_id=f"made-{with_tags}"))
    req.request_id = f"made-{with_tags}"
    with pytest.raises(InvalidArgument) as info:
        client.calls.LogBatch(req)
    assert info.value.reason == "REQUEST_ID_REUSED"
    assert len(list(client.get_metric_history(req.run_id, "loss"))) == 0


def test_health_and_reflection(server: ServerProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        resp = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for s in answer.list_services_response.service}
        assert "trackline.v1.TrackingService" in names


def test_delete_and_restore_run(client: TracklineClient) -> None:
    run = client.create_run()
    client.delete_run(run.run_id)
    assert client.get_run(run.run_id).lifecycle_stage == pb.LIFECYCLE_STAGE_DELETED
    with pytest.raises(FailedPrecondition) as info:
        client.log_metric(run.run_id, "loss", 1.0)
    assert info.value.reason == "RUN_DELETED"
    with pytest.raises(FailedPrecondition) as info:
        client.delete_run(run.run_id)
    assert info.value.reason == "WRONG_LIFECYCLE_STAGE"
    client.restore_run(run.run_id)
    client.log_metric(run.run_id, "loss", 1.0)
    assert client.get_run(run.run_id).lifecycle_stage == pb.LIFECYCLE_STAGE_ACTIVE
    with pytest.raises(NotFound):
        client.delete_run("missing")


def test_concurrent_point_batches_are_each_checked_against_their_run(
    client: TracklineClient,
) -> None:
    """Points-only LogBatch calls share flushes and one run check per flush: sent at once to
    live, deleted and missing runs and to a run of a deleted experiment, each call gets its
    own run's answer and only the live runs' points are stored."""
    live = [client.create_run().run_id for _ in range(6)]
    deleted = client.create_run().run_id
    client.delete_run(deleted)
    gone_exp = client.create_experiment("gone")
    orphan = client.create_run(gone_exp.experiment_id).run_id
    client.delete_experiment(gone_exp.experiment_id)
    targets = [*live, deleted, orphan, "0" * 32] * 4

    def send(i: int, run_id: str) -> str:
        series = pb.MetricSeries(key="loss", steps=[i], timestamps=[1], values=[0.5])
        try:
            client.log_batch(run_id, metrics=[series])
        except (FailedPrecondition, NotFound) as err:
            return err.reason
        return "OK"

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(len(targets)), targets))
    expected = {deleted: "RUN_DELETED", orphan: "EXPERIMENT_DELETED", "0" * 32: "RUN_NOT_FOUND"}
    assert answers == [expected.get(run_id, "OK") for run_id in targets]
    for run_id in live:
        assert len(list(client.get_metric_history(run_id, "loss"))) == 4
    client.restore_run(deleted)
    assert list(client.get_metric_history(deleted, "loss")) == []


def test_delete_and_restore_experiment(client: TracklineClient) -> None:
    exp = client.create_experiment("to-delete")
    client.delete_experiment(exp.experiment_id)
    assert client.get_experiment(exp.experiment_id).lifecycle_stage == pb.LIFECYCLE_STAGE_DELETED
    with pytest.raises(FailedPrecondition) as info:
        client.create_run(exp.experiment_id)
    assert info.value.reason == "EXPERIMENT_DELETED"
    client.restore_experiment(exp.experiment_id)
    client.create_run(exp.experiment_id)
    with pytest.raises(FailedPrecondition) as info:
        client.restore_experiment(exp.experiment_id)
    assert info.value.reason == "WRONG_LIFECYCLE_STAGE"
    with pytest.raises(FailedPrecondition) as info:
        client.delete_experiment("0")
    assert info.value.reason == "DEFAULT_EXPERIMENT"


def test_delete_tag(client: TracklineClient) -> None:
    run = client.create_run(tags={"keep": "1", "drop": "2"})
    client.delete_tag(run.run_id, "drop")
    assert {t.key for t in client.get_run(run.run_id).tags} == {"keep"}
    with pytest.raises(NotFound) as info:
        client.delete_tag(run.run_id, "drop")
    assert info.value.reason == "TAG_NOT_FOUND"
