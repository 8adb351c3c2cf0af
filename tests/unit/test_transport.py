"""The transport's call rules (trackline/_transport.py) against an in-process stand-in server
that answers from a script: which calls are retried, RetryInfo honoured, per-call timeout and
metadata, the typed call table and the raw stubs. The errors it sends are built by the
server's own error module, so the client reads what the real server writes."""

from __future__ import annotations

import time
import typing
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from trackline import (
    DeadlineExceeded,
    ResourceExhausted,
    TracklineClient,
    TracklineError,
    Unavailable,
)
from trackline._calls import IDEMPOTENT, REGISTRY_IDEMPOTENT, RegistryCalls, TrackingCalls
from trackline._transport import StreamCall, Transport
from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import tracking_pb2 as tpb
from trackline_server import errors

SERVICE = tpb.DESCRIPTOR.services_by_name["TrackingService"]
# An answer: None (the empty response), a server error, or seconds to wait before None.
Answer = errors.TracklineError | float | None


def unavailable() -> errors.TracklineError:
    return errors.Unavailable("STORE_UNAVAILABLE", "the store is away")


@dataclass
class Attempt:
    method: str
    request: Any
    metadata: list[tuple[str, Any]]
    at: float = field(default_factory=time.monotonic)


class Scripted:
    """Answers every TrackingService method from ``script`` (method: answers in turn, the last
    one repeated; no script: the empty response) and records every attempt."""

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.attempts: list[Attempt] = []

    def names(self) -> list[str]:
        return [a.method for a in self.attempts]

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method in SERVICE.methods:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                self._answerer(method.name, getattr(tpb, method.output_type.name)),
                request_deserializer=getattr(tpb, method.input_type.name).FromString,
                response_serializer=lambda resp: resp.SerializeToString(),
            )
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    def _answerer(self, name: str, response: type[Any]) -> Any:
        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            self.attempts.append(Attempt(name, request, list(context.invocation_metadata())))
            answers = self.script.get(name, [None])
            turn = sum(a.method == name for a in self.attempts) - 1
            outcome = answers[min(turn, len(answers) - 1)]
            if isinstance(outcome, errors.TracklineError):
                context.abort_with_status(errors.grpc_status(outcome))
            if isinstance(outcome, float):
                time.sleep(outcome)
            return response()

        return answer


@pytest.fixture
def fake() -> Iterator[tuple[Scripted, str]]:
    servicer = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((servicer.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_every_tracking_method_is_a_typed_call_with_its_retry_rule() -> None:
    hints = typing.get_type_hints(TrackingCalls)
    names = {m.name for m in SERVICE.methods}
    assert set(hints) == names
    calls = TrackingCalls(Transport("127.0.0.1:1"))
    for method in SERVICE.methods:
        call = getattr(calls, method.name)
        assert typing.get_args(hints[method.name]) == (call.request_type, call.response_type)
        assert call.request_type.DESCRIPTOR is method.input_type
        assert call.response_type.DESCRIPTOR is method.output_type
        assert call.idempotent == (method.name in IDEMPOTENT)
    assert names - IDEMPOTENT == {"CreateExperiment", "CreateRun", "LogBatch"}


@pytest.mark.parametrize(
    ("method", "request_", "retried"),
    [
        ("GetRun", tpb.GetRunRequest(run_id="r"), True),
        ("SearchRuns", tpb.SearchRunsRequest(), True),
        ("GetMetricHistory", tpb.GetMetricHistoryRequest(run_id="r", key="k"), True),
        ("UpdateRun", tpb.UpdateRunRequest(run_id="r"), True),
        ("DeleteRun", tpb.DeleteRunRequest(run_id="r"), True),
        ("RestoreExperiment", tpb.RestoreExperimentRequest(experiment_id="1"), True),
        ("DeleteRunTag", tpb.DeleteRunTagRequest(run_id="r", key="k"), True),
        ("CreateRun", tpb.CreateRunRequest(), False),
        ("CreateRun", tpb.CreateRunRequest(request_id="once"), True),
        ("CreateExperiment", tpb.CreateExperimentRequest(name="e"), False),
        ("CreateExperiment", tpb.CreateExperimentRequest(name="e", request_id="once"), True),
        ("LogBatch", tpb.LogBatchRequest(run_id="r"), False),
        ("LogBatch", tpb.LogBatchRequest(run_id="r", request_id="once"), True),
    ],
)
def test_idempotent_calls_and_calls_with_a_request_id_are_retried(
    fake: tuple[Scripted, str], method: str, request_: Any, retried: bool
) -> None:
    servicer, address = fake
    servicer.script[method] = [unavailable(), unavailable(), None]
    client = TracklineClient(address, retry_seconds=10)
    call = getattr(client.calls, method)
    if retried:
        call(request_)
        assert servicer.names() == [method] * 3
        assert all(a.request == request_ for a in servicer.attempts)
    else:
        with pytest.raises(Unavailable) as exc:
            call(request_)
        assert exc.value.reason == "STORE_UNAVAILABLE"
        assert servicer.names() == [method]


def test_the_client_gives_its_creates_and_writes_a_request_id(fake: tuple[Scripted, str]) -> None:
    servicer, address = fake
    for method in ("CreateExperiment", "CreateRun", "LogBatch"):
        servicer.script[method] = [unavailable(), None]
    client = TracklineClient(address, retry_seconds=10)
    client.create_experiment("e")
    client.create_run("1")
    client.log_param("r", "lr", 0.1)
    client.create_run("1")
    ids = [a.request.request_id for a in servicer.attempts]
    assert servicer.names() == ["CreateExperiment"] * 2 + ["CreateRun"] * 2 + ["LogBatch"] * 2 + [
        "CreateRun"
    ]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]  # one id per call
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)


def test_a_create_that_met_its_own_earlier_attempt_is_retried(fake: tuple[Scripted, str]) -> None:
    """ABORTED REQUEST_ID_IN_FLIGHT: a concurrent attempt with the same request id was applied
    first; a retry gets its result."""
    servicer, address = fake
    servicer.script["CreateRun"] = [errors.Aborted("REQUEST_ID_IN_FLIGHT", "retry"), None]
    client = TracklineClient(address, retry_seconds=10)
    client.create_run()
    assert servicer.names() == ["CreateRun"] * 2
    assert servicer.attempts[0].request.request_id == servicer.attempts[1].request.request_id


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidArgument("INVALID_PAGE_TOKEN", "bad token", "page_token"),
        errors.FailedPrecondition("RUN_DELETED", "run is deleted"),
        errors.Aborted("WRITER_FENCED", "taken over"),
        errors.Internal("INTERNAL", "error id 1"),
        errors.ResourceExhausted("HISTORY_TOO_LARGE", "too many points"),  # no RetryInfo
    ],
)
def test_other_failures_are_not_retried(
    fake: tuple[Scripted, str], error: errors.TracklineError
) -> None:
    servicer, address = fake
    servicer.script["GetRun"] = [error, None]
    client = TracklineClient(address, retry_seconds=10)
    with pytest.raises(TracklineError) as exc:
        client.get_run("r")
    assert exc.value.reason == error.reason and exc.value.retry_delay is None
    assert servicer.names() == ["GetRun"]


def test_retry_info_delay_is_waited_out(fake: tuple[Scripted, str]) -> None:
    servicer, address = fake
    busy = errors.ResourceExhausted("SERVER_BUSY", "too many bytes in flight", retry_after=0.4)
    servicer.script["GetRun"] = [busy, busy, None]
    client = TracklineClient(address, retry_seconds=10)
    client.get_run("r")
    at = [a.at for a in servicer.attempts]
    assert len(at) == 3 and at[1] - at[0] >= 0.4 and at[2] - at[1] >= 0.4
    # Without RetryInfo the first pauses are well under that (0.05 s, jittered, doubling).
    servicer.attempts.clear()
    servicer.script["GetRun"] = [unavailable(), None]
    client.get_run("r")
    assert servicer.attempts[1].at - servicer.attempts[0].at < 0.4


def test_a_retry_delay_beyond_the_retry_window_is_raised_at_once(
    fake: tuple[Scripted, str],
) -> None:
    servicer, address = fake
    servicer.script["GetRun"] = [errors.ResourceExhausted("SERVER_BUSY", "busy", retry_after=5.0)]
    client = TracklineClient(address, retry_seconds=1)
    began = time.monotonic()
    with pytest.raises(ResourceExhausted) as exc:
        client.get_run("r")
    assert time.monotonic() - began < 1 and exc.value.retry_delay == 5.0
    assert exc.value.reason == "SERVER_BUSY" and servicer.names() == ["GetRun"]


def test_timeout_per_call_and_the_clients_default(fake: tuple[Scripted, str]) -> None:
    servicer, address = fake
    servicer.script["GetRun"] = [1.0]
    client = TracklineClient(address)
    assert client.timeout == 60.0
    with pytest.raises(DeadlineExceeded):
        client.get_run("r", timeout=0.2)
    client.timeout = 0.2
    with pytest.raises(DeadlineExceeded):
        client.get_run("r")
    client.get_run("r", timeout=10)
    assert servicer.names() == ["GetRun"] * 3  # a deadline passed is not retried


def test_metadata_per_call_beside_the_token(fake: tuple[Scripted, str]) -> None:
    servicer, address = fake
    client = TracklineClient(address, token="secret")
    client.get_run("r", metadata=[("x-trace", "7")])
    client.delete_run("r", metadata=[("authorization", "Bearer other")])
    client.get_metric_histories(["r"], ["k"])
    sent = [
        ([v for k, v in a.metadata if k == "authorization"], dict(a.metadata).get("x-trace"))
        for a in servicer.attempts
    ]
    assert sent == [(["Bearer secret"], "7"), (["Bearer other"], None), (["Bearer secret"], None)]


def test_a_request_of_another_method_is_refused(fake: tuple[Scripted, str]) -> None:
    servicer, address = fake
    client = TracklineClient(address)
    with pytest.raises(TypeError, match="GetRun takes a GetRunRequest, not GetExperimentRequest"):
        client.calls.GetRun(tpb.GetExperimentRequest(experiment_id="r"))  # type: ignore[arg-type]
    assert servicer.attempts == []


def test_raw_stubs_of_every_service_share_the_clients_channel(
    fake: tuple[Scripted, str],
) -> None:
    servicer, address = fake
    client = TracklineClient(address, token="secret")
    assert client.stub is client.stubs.tracking
    assert callable(client.stubs.ingest.StreamMetrics)
    client.stubs.tracking.GetRun(tpb.GetRunRequest(run_id="r"), timeout=10)
    client.stubs.tracking.GetRun(
        tpb.GetRunRequest(run_id="r"), timeout=10, metadata=client.transport.metadata
    )
    assert [dict(a.metadata).get("authorization") for a in servicer.attempts] == [
        None,
        "Bearer secret",
    ]
    servicer.attempts.clear()
    servicer.script["GetRun"] = [unavailable(), None]
    with pytest.raises(grpc.RpcError):  # raw: no retry, no mapping
        client.stub.GetRun(tpb.GetRunRequest(run_id="r"), timeout=10)


def test_a_forked_child_opens_its_own_channel_and_leaves_the_parents() -> None:
    transport = Transport("127.0.0.1:1")
    parent = transport.channel
    assert transport.channel is parent  # one per process
    transport._after_fork_in_child()  # as os.fork runs it in the child
    child = transport.channel
    assert child is not parent and transport.stubs.tracking is not None
    transport.close()
    parent.close()


def test_every_registry_method_is_a_typed_call_with_its_retry_rule() -> None:
    service = rpb.DESCRIPTOR.services_by_name["RegistryService"]
    hints = typing.get_type_hints(RegistryCalls)
    assert set(hints) == {m.name for m in service.methods}
    calls = RegistryCalls(Transport("127.0.0.1:1"))
    for method in service.methods:
        call = getattr(calls, method.name)
        assert typing.get_args(hints[method.name]) == (call.request_type, call.response_type)
        assert call.request_type.DESCRIPTOR is method.input_type
        assert call.response_type.DESCRIPTOR is method.output_type
        assert isinstance(call, StreamCall) == method.server_streaming
        if not method.server_streaming:
            assert call.idempotent == (method.name in REGISTRY_IDEMPOTENT)
    unary = {m.name for m in service.methods if not m.server_streaming}
    assert unary - REGISTRY_IDEMPOTENT == {
        "CreateRegisteredModel",
        "CreateModelVersion",
        "RenameRegisteredModel",
        "DeleteRegisteredModel",
    }
    create = rpb.CreateModelVersionRequest(name="m", source="s", request_id="r")
    assert calls.CreateModelVersion.retries(create)
    assert not calls.CreateModelVersion.retries(rpb.CreateModelVersionRequest(name="m"))
