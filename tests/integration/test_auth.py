"""Bearer-token authentication on a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trackline import TracklineClient, Unauthenticated
from trackline._exceptions import from_rpc_error
from trackline.v1 import tracking_pb2 as tpb
from trackline.v1 import tracking_pb2_grpc

from tests.support.servers import ServerProcess, start_server


@pytest.fixture
def secured(tmp_path: Path) -> ServerProcess:
    srv = start_server(tmp_path, extra_args=["--auth-token", "old-token", "--auth-token", "s3cr3t"])
    return srv


def test_valid_tokens_are_admitted(secured: ServerProcess) -> None:
    for token in ("s3cr3t", "old-token"):
        client = TracklineClient(secured.address, token=token)
        assert client.get_experiment("0").name == "Default"
        client.close()


@pytest.mark.parametrize(
    ("token", "reason"),
    [(None, "MISSING_TOKEN"), ("wrong", "INVALID_TOKEN"), ("", "MISSING_TOKEN")],
)
def test_missing_or_wrong_token_is_unauthenticated(
    secured: ServerProcess, token: str | None, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRACKLINE_TOKEN", raising=False)
    client = TracklineClient(secured.address, token=token, retry_seconds=0)
    with pytest.raises(Unauthenticated) as err:
        client.create_experiment("nope")
    assert err.value.reason == reason
    client.close()
    # Nothing was written by the rejected call.
    admin = TracklineClient(secured.address, token="s3cr3t")
    assert [e.name for e in admin.search_experiments()] == ["Default"]
    admin.close()


def test_malformed_header(secured: ServerProcess) -> None:
    with grpc.insecure_channel(secured.address) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetExperiment(
                tpb.GetExperimentRequest(experiment_id="0"),
                metadata=[("authorization", "Basic dXNlcjpwYXNz")],
            )
    assert from_rpc_error(err.value).reason == "MALFORMED_TOKEN"


def test_token_from_environment(secured: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLINE_TOKEN", "s3cr3t")
    client = TracklineClient(secured.address)
    assert client.get_experiment("0").experiment_id == "0"
    client.close()


def test_health_check_needs_no_token(secured: ServerProcess) -> None:
    with grpc.insecure_channel(secured.address) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_uses_token(secured: ServerProcess) -> None:
    base = [sys.executable, "-m", "trackline.cli", "--uri", secured.address]
    denied = subprocess.run([*base, "experiments", "list"], capture_output=True, text=True)
    assert denied.returncode == 1
    assert denied.stderr.startswith("trackline: MISSING_TOKEN")
    assert len(denied.stderr.strip().splitlines()) == 1
    ok = subprocess.run(
        [*base, "--token", "s3cr3t", "experiments", "list"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "Default" in ok.stdout


def test_empty_token_flag_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="server did not start"):
        start_server(tmp_path, extra_args=["--auth-token", ""])
