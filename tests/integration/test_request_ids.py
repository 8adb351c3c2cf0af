"""Retried creates apply once: CreateExperiment and CreateRun carry a request_id, and a retry
with the same id gets what the first attempt created (the LogBatch side is in
test_hardening_errors.py)."""

from __future__ import annotations

import threading

import grpc
import pytest
from trackline import TracklineClient
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from tests.support.servers import ServerProcess


def stub_for(server: ServerProcess) -> tracking_pb2_grpc.TrackingServiceStub:
    return tracking_pb2_grpc.TrackingServiceStub(grpc.insecure_channel(server.address))


def reason(err: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    from trackline._exceptions import from_rpc_error

    typed = from_rpc_error(err)
    return typed.code, typed.reason


def test_create_experiment_retried_returns_the_first_experiment(server: ServerProcess) -> None:
    stub = stub_for(server)
    request = tpb.CreateExperimentRequest(
        name="once", tags=[pb.Tag(key="t", value="v")], request_id="exp-1"
    )
    first = stub.CreateExperiment(request).experiment
    again = stub.CreateExperiment(request).experiment
    assert again == first
    # Without a request id the same name is taken, as before.
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateExperiment(tpb.CreateExperimentRequest(name="once"))
    assert reason(err.value) == (grpc.StatusCode.ALREADY_EXISTS, "EXPERIMENT_ALREADY_EXISTS")


def test_create_run_retried_creates_one_run(server: ServerProcess) -> None:
    stub = stub_for(server)
    exp = stub.CreateExperiment(tpb.CreateExperimentRequest(name="e")).experiment
    request = tpb.CreateRunRequest(
        experiment_id=exp.experiment_id, run_name="r", request_id="run-1"
    )
    first = stub.CreateRun(request).run
    assert stub.CreateRun(request).run.run_id == first.run_id
    found = stub.SearchRuns(tpb.SearchRunsRequest(experiment_ids=[exp.experiment_id])).runs
    assert [r.run_id for r in found] == [first.run_id]
    other = stub.CreateRun(
        tpb.CreateRunRequest(experiment_id=exp.experiment_id, request_id="run-2")
    )
    assert other.run.run_id != first.run_id


def test_concurrent_retries_of_one_create_run_make_one_run(server: ServerProcess) -> None:
    stub = stub_for(server)
    request = tpb.CreateRunRequest(run_name="racy", request_id="run-race")
    got: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            got.append(stub.CreateRun(request).run.run_id)
        except grpc.RpcError as exc:  # an attempt that lost the race is refused, never doubled
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got and len(set(got)) == 1
    client = TracklineClient(server.address)
    runs = client.search_runs(["0"], "attributes.run_name = 'racy'")
    assert [r.run_id for r in runs] == [got[0]]
    client.close()
    for exc in errors:
        assert isinstance(exc, grpc.RpcError)
        assert reason(exc) == (grpc.StatusCode.ABORTED, "REQUEST_ID_IN_FLIGHT")


def test_a_request_id_belongs_to_one_method(server: ServerProcess) -> None:
    stub = stub_for(server)
    run = stub.CreateRun(tpb.CreateRunRequest(request_id="shared")).run
    with pytest.raises(grpc.RpcError) as err:
        stub.LogBatch(tpb.LogBatchRequest(run_id=run.run_id, request_id="shared"))
    assert reason(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateExperiment(tpb.CreateExperimentRequest(name="x", request_id="shared"))
    assert reason(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    assert "CreateRun" in err.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize("request_id", ["x" * 129, "a\x00b"])
def test_bad_request_ids_are_refused(server: ServerProcess, request_id: str) -> None:
    stub = stub_for(server)
    for call, request in (
        (stub.CreateRun, tpb.CreateRunRequest(request_id=request_id)),
        (stub.CreateExperiment, tpb.CreateExperimentRequest(name="n", request_id=request_id)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert reason(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST_ID")
