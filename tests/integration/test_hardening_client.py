"""Issue 9, findings 10(g) and 11 on the client's side: URIs, the wait for a server that is
down, which calls are resent (creates under their request id), resuming deleted runs, and a
command line that answers every failure in one line."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import trackline
from trackline import FailedPrecondition, TracklineClient, Unavailable
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from tests.support.ports import free_port
from tests.support.servers import ServerProcess, start_server

INT64_MAX = 2**63 - 1


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server on SQLite, for behaviour of the client that no backend changes."""
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def fluent_reset() -> Iterator[None]:
    yield
    trackline.set_tracking_uri("localhost")  # drops the module-level client and sender


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackline.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _one_line_failure(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trackline"), out.stderr
    return lines[0]


# Finding 11: URIs


def test_http_and_grpc_uris_reach_the_server(
    sqlite_server: ServerProcess, fluent_reset: None
) -> None:
    port = sqlite_server.address.rsplit(":", 1)[1]
    for uri in (f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{port}/", f"localhost:{port}"):
        client = TracklineClient(uri, retry_seconds=5)
        try:
            assert client.create_experiment(f"via {uri}").experiment_id
        finally:
            client.close()
    trackline.set_tracking_uri(f"http://127.0.0.1:{port}")  # the metric stream too
    with trackline.start_run() as run:
        trackline.log_metric("loss", 0.5, synchronous=True)
    got = TracklineClient(sqlite_server.address).get_run(run.run_id)
    assert [m.value for m in got.latest_metrics] == [0.5]


def test_tls_uri_to_a_plaintext_server_fails_in_the_named_wait(
    sqlite_server: ServerProcess,
) -> None:
    port = sqlite_server.address.rsplit(":", 1)[1]
    client = TracklineClient(f"https://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(Unavailable) as exc:
        client.get_experiment("0")
    assert exc.value.reason == "SERVER_UNREACHABLE"
    assert f"grpcs://127.0.0.1:{port} after 1 s" in exc.value.message


def test_cli_bad_uri_is_one_line() -> None:
    line = _one_line_failure(_cli("--uri", "127.0.0.1:99999", "runs", "list"))
    assert "the port must be a number from 1 to 65535, not '99999'" in line
    line = _one_line_failure(_cli("runs", "list", env={"TRACKLINE_URI": "http://h:1/api"}))
    assert "a path is not allowed" in line


# Finding 11: the server is down


def test_start_run_with_the_server_down_fails_in_one_named_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fluent_reset: None
) -> None:
    port = free_port()
    monkeypatch.setenv("TRACKLINE_CONNECT_TIMEOUT", "1.5")
    trackline.set_tracking_uri(f"127.0.0.1:{port}")
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="trackline"):
        with pytest.raises(Unavailable) as exc, trackline.start_run():
            pass
    assert time.monotonic() - began < 20
    assert exc.value.reason == "SERVER_UNREACHABLE"
    assert exc.value.message == (
        f"cannot reach the Trackline server at 127.0.0.1:{port} after 1.5 s"
        " (is it running? set TRACKLINE_URI)"
    )
    waits = [r for r in caplog.records if "waiting for the Trackline server" in r.message]
    assert len(waits) == 1


def test_cli_with_the_server_down_is_one_line() -> None:
    port = free_port()
    out = _cli("--uri", f"127.0.0.1:{port}", "runs", "list", env={"TRACKLINE_CONNECT_TIMEOUT": "1"})
    line = _one_line_failure(out)
    assert f"cannot reach the Trackline server at 127.0.0.1:{port} after 1 s" in line


def test_cli_interrupted_while_waiting_is_one_line() -> None:
    with socket.socket() as silent:  # accepts the connection, never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "trackline.cli", "--uri", f"127.0.0.1:{port}", "runs", "list"],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TRACKLINE_CONNECT_TIMEOUT": "60"},
        )
        silent.settimeout(30)
        conn, _ = silent.accept()  # the command is now waiting for the server
        try:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            conn.close()
    assert proc.returncode == 130 and err.splitlines() == ["trackline: interrupted"], err


class _Probe(tracking_pb2_grpc.TrackingServiceServicer):
    """A stand-in server that records the metadata and request of every call: CreateRun
    answers UNAVAILABLE to a request without a request id and to the first two attempts
    with one, GetExperiment the first two times."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, Any]]]] = []
        self.requests: list[Any] = []

    def _seen(self, name: str, context: grpc.ServicerContext, request: Any) -> None:
        self.calls.append((name, list(context.invocation_metadata())))
        self.requests.append(request)

    def CreateRun(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._seen("CreateRun", context, request)
        if not request.request_id or sum(name == "CreateRun" for name, _ in self.calls) <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the store is away")
        return tpb.CreateRunResponse(run=pb.Run(run_id="created"))

    def GetExperiment(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._seen("GetExperiment", context, request)
        if sum(name == "GetExperiment" for name, _ in self.calls) <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the store is away")
        return tpb.GetExperimentResponse(experiment=pb.Experiment(experiment_id="0"))

    def LogBatch(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._seen("LogBatch", context, request)
        return tpb.LogBatchResponse()

    def GetMetricHistory(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._seen("GetMetricHistory", context, request)
        step = int(request.page_token or 0)
        series = pb.MetricSeries(key="k", steps=[step], timestamps=[0], values=[1.0])
        token = str(step + 1) if step < 2 else ""
        return tpb.GetMetricHistoryResponse(series=series, next_page_token=token)


@pytest.fixture
def probe() -> Iterator[tuple[_Probe, str]]:
    servicer = _Probe()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_create_without_request_id_is_not_resent_after_unavailable(
    probe: tuple[_Probe, str],
) -> None:
    servicer, address = probe
    client = TracklineClient(address, retry_seconds=10)
    assert client.get_experiment("0").experiment_id == "0"  # retried: a read
    with pytest.raises(Unavailable):
        client.calls.CreateRun(tpb.CreateRunRequest())  # may have been applied: never resent
    assert [name for name, _ in servicer.calls] == ["GetExperiment"] * 3 + ["CreateRun"]


def test_create_run_is_retried_under_one_request_id(probe: tuple[_Probe, str]) -> None:
    """The client gives each create_run a fresh request id and resends it unchanged, so the
    server answers a resend with the run the first attempt created."""
    servicer, address = probe
    client = TracklineClient(address, retry_seconds=10)
    assert client.create_run(run_name="r").run_id == "created"
    ids = [r.request_id for r in servicer.requests]
    assert [name for name, _ in servicer.calls] == ["CreateRun"] * 3
    assert len(set(ids)) == 1 and len(ids[0]) == 32
    client.create_run()
    assert servicer.requests[-1].request_id not in ("", ids[0])  # a new call, a new id


class _LosesFirstReplies:
    """A proxy in front of a real server that forwards every TrackingService call, but answers
    the first CreateExperiment and CreateRun UNAVAILABLE after the server applied it: a reply
    lost on the way back."""

    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self.forwarded: list[str] = []

    def handler(self) -> grpc.GenericRpcHandler:
        service = tpb.DESCRIPTOR.services_by_name["TrackingService"]
        return grpc.method_handlers_generic_handler(
            service.full_name,
            {
                m.name: grpc.unary_unary_rpc_method_handler(self._forward(m.name))
                for m in service.methods
            },
        )

    def _forward(self, name: str) -> Any:
        upstream = self._channel.unary_unary(f"/trackline.v1.TrackingService/{name}")

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.forwarded.append(name)
            try:
                reply = upstream(request, metadata=context.invocation_metadata(), timeout=30)
            except grpc.RpcError as err:
                context.abort(err.code(), err.details())
            if name in ("CreateExperiment", "CreateRun") and self.forwarded.count(name) == 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the reply was lost")
            return bytes(reply)

        return forward


def test_retried_creates_return_what_the_first_attempt_created(server: ServerProcess) -> None:
    proxy = _LosesFirstReplies(server.address)
    front = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    front.add_generic_rpc_handlers((proxy.handler(),))
    port = front.add_insecure_port("127.0.0.1:0")
    front.start()
    try:
        client = TracklineClient(f"127.0.0.1:{port}", retry_seconds=10)
        exp = client.create_experiment("once")  # applied, reply lost, retried: not taken
        run = client.create_run(exp.experiment_id, run_name="once")
        assert proxy.forwarded == ["CreateExperiment"] * 2 + ["CreateRun"] * 2
        direct = TracklineClient(server.address)
        assert sorted(e.name for e in direct.search_experiments()) == ["Default", "once"]
        assert direct.get_experiment_by_name("once").experiment_id == exp.experiment_id
        assert [r.run_id for r in direct.search_runs([exp.experiment_id])] == [run.run_id]
        assert direct.get_run(run.run_id).run_name == "once"
        direct.close()
        client.close()
    finally:
        front.stop(None)


# Finding 11: exactly one authorization header


def test_exactly_one_authorization_header_per_call(probe: tuple[_Probe, str]) -> None:
    servicer, address = probe
    client = TracklineClient(address, token="  secret\n")  # as read from a file
    client.log_param("r", "k", "v")
    assert [s for s, _, _ in client.get_metric_history("r", "k")] == [0, 1, 2]  # prefetched
    assert [name for name, _ in servicer.calls] == ["LogBatch"] + ["GetMetricHistory"] * 3
    for _, metadata in servicer.calls:
        assert [v for k, v in metadata if k == "authorization"] == ["Bearer secret"]


# Finding 11: resuming a deleted run


def test_resuming_a_deleted_run_is_refused(
    server: ServerProcess,
    client: TracklineClient,
    monkeypatch: pytest.MonkeyPatch,
    fluent_reset: None,
) -> None:
    run = client.create_run(run_name="gone")
    client.log_param(run.run_id, "lr", "0.1")
    client.delete_run(run.run_id)
    trackline.set_tracking_uri(server.address)
    with pytest.raises(FailedPrecondition) as exc, trackline.start_run(run.run_id):
        trackline.log_param("lr", "0.2")
    assert exc.value.reason == "RUN_DELETED"
    assert exc.value.message == (
        f"run {run.run_id!r} is deleted; restore it first (trackline runs restore {run.run_id})"
    )
    monkeypatch.setenv("TRACKLINE_RUN_ID", run.run_id)
    with pytest.raises(FailedPrecondition, match="RUN_DELETED"), trackline.start_run():
        pass
    assert trackline.active_run() is None
    after = client.get_run(run.run_id)
    assert after.lifecycle_stage == pb.LIFECYCLE_STAGE_DELETED
    assert after.status == pb.RUN_STATUS_RUNNING and not after.HasField("end_time")
    assert {p.key: p.value for p in after.params} == {"lr": "0.1"}


def test_resuming_a_run_of_a_deleted_experiment_is_refused(
    server: ServerProcess, client: TracklineClient, fluent_reset: None
) -> None:
    exp = client.create_experiment("going")
    run = client.create_run(exp.experiment_id)
    client.delete_experiment(exp.experiment_id)
    trackline.set_tracking_uri(server.address)
    with pytest.raises(FailedPrecondition) as exc, trackline.start_run(run.run_id):
        pass
    assert exc.value.reason == "EXPERIMENT_DELETED"
    assert f"trackline experiments restore {exp.experiment_id}" in exc.value.message
    assert client.get_run(run.run_id).status == pb.RUN_STATUS_RUNNING


def test_cli_restore_named_by_the_refusal_restores(
    sqlite_server: ServerProcess, fluent_reset: None
) -> None:
    client = TracklineClient(sqlite_server.address)
    run = client.create_run()
    client.delete_run(run.run_id)
    out = _cli("--uri", sqlite_server.address, "runs", "restore", run.run_id)
    assert out.returncode == 0 and out.stdout == f"restored run {run.run_id}\n", out.stderr
    trackline.set_tracking_uri(sqlite_server.address)
    with trackline.start_run(run.run_id):
        pass
    assert client.get_run(run.run_id).status == pb.RUN_STATUS_FINISHED


# Findings 10(g) and 11: the command line


@pytest.mark.parametrize("value", ["-1", "0", "ten", "1.5"])
def test_cli_max_results_must_be_a_positive_integer(value: str) -> None:
    line = _one_line_failure(_cli("runs", "list", "--max-results", value))
    assert line == (
        f"trackline runs list: argument --max-results: expected a positive integer, not"
        f" {value!r} (see --help)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "show", "no-such-run"],
        ["runs", "show", "x" * 10_000],
        ["runs", "search", "metrics.loss <"],
        ["runs", "list", "-e", "not-a-number"],
        ["runs", "list", "-n", "no such experiment"],
        ["runs", "list", "--order-by", "nonsense DESC ASC"],
        ["runs", "restore", "no-such-run"],
        ["experiments", "list", "--filter", "name ="],
        ["runs"],
        ["no-such-command"],
    ],
)
def test_cli_bad_input_is_one_line(sqlite_server: ServerProcess, args: list[str]) -> None:
    _one_line_failure(_cli("--uri", sqlite_server.address, *args))


def test_cli_lists_runs_with_odd_stored_values(server: ServerProcess) -> None:
    client = TracklineClient(server.address)
    honest = client.create_run(run_name="honest")
    odd = client.create_run(run_name="odd\x1b[2J\n" + "n" * 400)
    for request in (  # the server may refuse these (10(g)); the listing must survive either way
        tpb.CreateRunRequest(experiment_id="0", run_name="far future", start_time=INT64_MAX),
        tpb.CreateRunRequest(experiment_id="0", run_name="before 1970", start_time=-5),
    ):
        try:
            client.stub.CreateRun(request, timeout=30)
        except grpc.RpcError:
            pass
    try:
        client.stub.UpdateRun(tpb.UpdateRunRequest(run_id=odd.run_id, status=99), timeout=30)  # type: ignore[arg-type]
    except grpc.RpcError:
        pass
    out = _cli("--uri", server.address, "runs", "list")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert honest.run_id in out.stdout and odd.run_id in out.stdout
    assert "\x1b" not in out.stdout
    assert len(out.stdout.splitlines()) == 1 + len(list(client.search_runs()))
    for run in client.search_runs():
        shown = _cli("--uri", server.address, "runs", "show", run.run_id)
        assert shown.returncode == 0 and run.run_id in shown.stdout, shown.stderr
