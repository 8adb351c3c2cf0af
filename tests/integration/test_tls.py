"""TLS and mutual TLS on a real server, with a test CA made for the test (support/tls.py):
a run, its metric stream and its artifacts over TLS; the handshakes that must fail (no client
certificate, an unrelated CA, an expired certificate, plaintext against TLS and the reverse);
a SIGHUP reload that serves a new certificate to new connections while an open stream goes on;
the start-up errors of bad TLS flags; the plaintext warning; the request header limit."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trackline
from cryptography import x509
from trackline import TracklineClient, Unavailable
from trackline.v1 import tracking_pb2 as tpb

from tests.support.databases import sqlite_url, store_url
from tests.support.servers import ServerProcess, start_server
from tests.support.streams import Stream
from tests.support.tls import KeyPair, Pki, make_pki
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_args(pair: KeyPair, client_ca: Path | None = None) -> list[str]:
    args = ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    return [*args, "--tls-client-ca", str(client_ca)] if client_ca else args


def _client(srv: ServerProcess, **tls: Path) -> TracklineClient:
    """A client of ``srv`` over TLS (``grpcs://``) with the settings ``tls``."""
    return TracklineClient(f"grpcs://{srv.address}", retry_seconds=5, connect_timeout=2, **tls)


def _unreachable(client: TracklineClient) -> str:
    """The message of the Unavailable that a first call of ``client`` raises."""
    try:
        with pytest.raises(Unavailable) as exc:
            client.get_experiment("0")
    finally:
        client.close()
    assert exc.value.reason == "SERVER_UNREACHABLE"
    return exc.value.message


def _served_serial(address: str, ca: Path) -> int:
    """The serial number of the certificate a new TLS connection to ``address`` is served."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# End to end


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_mutual_tls_carries_a_run_its_metric_stream_and_its_artifacts(
    tmp_path: Path, pki: Pki, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = start_server(
        tmp_path, store_url(backend, tmp_path), _tls_args(pki.server, client_ca=pki.ca)
    )
    assert "; transport mutual TLS;" in srv.banner
    # The module-level API from the environment alone: its client and its metric stream.
    monkeypatch.setenv("TRACKLINE_URI", f"grpcs://{srv.address}")
    monkeypatch.setenv("TRACKLINE_CA_FILE", str(pki.ca))
    monkeypatch.setenv("TRACKLINE_CLIENT_CERT", str(pki.client.cert))
    monkeypatch.setenv("TRACKLINE_CLIENT_KEY", str(pki.client.key))
    data = tmp_path / "model.txt"
    data.write_text("weights")
    with trackline.start_run() as run:
        for step in range(100):
            trackline.log_metric("loss", 1.0 / (step + 1), step=step)
        trackline.log_artifact(str(data), "out")
        trackline.flush()
    run_id = run.run_id
    # An explicit client, with the same files as arguments.
    for name in ("TRACKLINE_URI", "TRACKLINE_CA_FILE", "TRACKLINE_CLIENT_CERT"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("TRACKLINE_CLIENT_KEY")
    client = _client(srv, ca_file=pki.ca, client_cert=pki.client.cert, client_key=pki.client.key)
    assert client.uri == f"grpcs://{srv.address}"
    steps = [p.step for p in client.get_metric_history(run_id, "loss")]
    assert steps == list(range(100))
    got = client.download_artifacts(run_id, "out/model.txt", tmp_path / "back")
    assert Path(got).read_text() == "weights"
    client.close()


def test_tls_with_a_ca_file_and_no_scheme_asks_for_tls(tmp_path: Path, pki: Pki) -> None:
    srv = start_server(tmp_path, extra_args=_tls_args(pki.server))
    assert "; transport TLS;" in srv.banner
    client = TracklineClient(srv.address, ca_file=pki.ca, retry_seconds=5)
    assert client.uri == f"grpcs://{srv.address}"
    exp = client.create_experiment("over-tls")
    assert client.get_experiment(exp.experiment_id).name == "over-tls"
    client.close()


# Refused handshakes


@pytest.fixture
def mtls_server(tmp_path: Path, pki: Pki) -> ServerProcess:
    return start_server(tmp_path, extra_args=_tls_args(pki.server, client_ca=pki.ca))


def test_mutual_tls_refuses_a_client_without_a_certificate(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    message = _unreachable(_client(mtls_server, ca_file=pki.ca))
    assert "may require a client certificate" in message


def test_mutual_tls_refuses_a_certificate_of_another_ca(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    client = _client(
        mtls_server,
        ca_file=pki.ca,
        client_cert=pki.other_client.cert,
        client_key=pki.other_client.key,
    )
    assert "TLS" in _unreachable(client)


def test_mutual_tls_refuses_a_raw_call_at_the_handshake(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    """Refused before any call: a call without wait_for_ready fails UNAVAILABLE at once."""
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    with grpc.secure_channel(mtls_server.address, creds) as channel:
        stub = channel.unary_unary("/trackline.v1.TrackingService/SearchExperiments")
        with pytest.raises(grpc.RpcError) as exc:
            stub(tpb.SearchExperimentsRequest().SerializeToString(), timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_certificate_of_an_unrelated_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    srv = start_server(tmp_path, extra_args=_tls_args(pki.server))
    message = _unreachable(_client(srv, ca_file=pki.other_ca))
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "TRACKLINE_CA_FILE" in message


def test_system_roots_refuse_a_private_ca(tmp_path: Path, pki: Pki) -> None:
    srv = start_server(tmp_path, extra_args=_tls_args(pki.server))
    assert "CERTIFICATE_VERIFY_FAILED" in _unreachable(_client(srv))


def test_expired_server_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    srv = start_server(tmp_path, extra_args=_tls_args(pki.expired_server))
    assert "certificate has expired" in _unreachable(_client(srv, ca_file=pki.ca))


def test_plaintext_client_against_a_tls_server_fails_clearly(tmp_path: Path, pki: Pki) -> None:
    srv = start_server(tmp_path, extra_args=_tls_args(pki.server))
    client = TracklineClient(srv.address, connect_timeout=2)
    message = _unreachable(client)
    assert "it may serve TLS (use grpcs://host:port)" in message


def test_tls_client_against_a_plaintext_server_fails_clearly(tmp_path: Path, pki: Pki) -> None:
    srv = start_server(tmp_path)
    assert "; transport plaintext;" in srv.banner
    message = _unreachable(_client(srv, ca_file=pki.ca))
    assert "the server may speak plaintext" in message


# Reload


def test_sighup_serves_a_new_certificate_to_new_connections_while_a_stream_goes_on(
    tmp_path: Path, pki: Pki
) -> None:
    served = KeyPair(tmp_path / "served.pem", tmp_path / "served-key.pem")
    shutil.copy(pki.server.cert, served.cert)
    shutil.copy(pki.server.key, served.key)
    srv = start_server(tmp_path, extra_args=_tls_args(served))
    assert _served_serial(srv.address, pki.ca) == pki.server.serial
    client = _client(srv, ca_file=pki.ca)
    run_id = client.create_run().run_id
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    stream = Stream(srv.address, "tls-writer", credentials=creds)
    stream.batch(1, run_id, "m", [0])
    stream.until(1)

    shutil.copy(pki.renewed_server.cert, served.cert)
    shutil.copy(pki.renewed_server.key, served.key)
    srv.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: _served_serial(srv.address, pki.ca) == pki.renewed_server.serial)
    stream.batch(2, run_id, "m", [1])  # the connection opened before the reload goes on
    assert stream.until(2)[-1].acked_seq == 2
    stream.close()

    served.key.write_text("not a key")  # a reload that fails keeps the certificate served
    srv.proc.send_signal(signal.SIGHUP)
    assert _served_serial(srv.address, pki.ca) == pki.renewed_server.serial
    fresh = _client(srv, ca_file=pki.ca)
    assert [p.step for p in fresh.get_metric_history(run_id, "m")] == [0, 1]
    fresh.close()
    client.close()
    assert srv.proc.poll() is None


# Start-up


def _refused(tmp: Path, args: list[str], env: dict[str, str] | None = None) -> str:
    """Starts a server that must refuse to start; its one line on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "trackline_server", "--port", "0",
         "--store-uri", sqlite_url(tmp), "--artifact-root", str(tmp / "artifacts"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("trackline: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tls-cert", "{server.cert}"], "--tls-cert needs --tls-key"),
        (["--tls-key", "{server.key}"], "--tls-key needs --tls-cert"),
        (["--tls-client-ca", "{ca}"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--tls-cert", "{missing}", "--tls-key", "{server.key}"], "cannot read --tls-cert"),
        (["--tls-cert", "{server.key}", "--tls-key", "{server.key}"], "holds no PEM certificate"),
        (["--tls-cert", "{server.cert}", "--tls-key", "{server.cert}"], "not a PEM certificate"),
        (["--tls-cert", "{server.cert}", "--tls-key", "{client.key}"], "is not the key of"),
        (
            ["--tls-cert", "{server.cert}", "--tls-key", "{server.key}", "--tls-client-ca", "{x}"],
            "--tls-client-ca {x} holds no PEM CA certificate",
        ),
        (["--tls-cert", " ", "--tls-key", "{server.key}"], "--tls-cert (env TRACKLINE_TLS_CERT)"),
    ],
)
def test_bad_tls_flags_refuse_the_start_in_one_line(
    tmp_path: Path, pki: Pki, args: list[str], expected: str
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM")
    names = {
        "server": pki.server,
        "client": pki.client,
        "ca": pki.ca,
        "missing": tmp_path / "missing.pem",
        "x": junk,
    }
    line = _refused(tmp_path, [a.format(**names) for a in args])
    assert expected.format(**names) in line


def test_tls_files_come_from_the_environment(tmp_path: Path, pki: Pki) -> None:
    env = {
        "TRACKLINE_TLS_CERT": str(pki.server.cert),
        "TRACKLINE_TLS_KEY": str(pki.server.key),
        "TRACKLINE_TLS_CLIENT_CA": str(pki.ca),
    }
    srv = start_server(tmp_path, env=env)
    assert "; transport mutual TLS;" in srv.banner
    assert "TRACKLINE_TLS_KEY" in _refused(tmp_path, [], {**env, "TRACKLINE_TLS_KEY": ""})


def _stderr_at_start(tmp: Path, args: list[str]) -> str:
    """What a server started with ``args`` prints on stderr before and with its banner (it is
    then stopped)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackline_server", "--port", "0",
         "--store-uri", sqlite_url(tmp), "--artifact-root", str(tmp / "artifacts"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return err


@pytest.fixture
def wildcard_host() -> Iterator[None]:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", 0))
        except OSError:
            pytest.skip("cannot bind 0.0.0.0 here")
    yield


@pytest.mark.usefixtures("wildcard_host")
def test_plaintext_on_a_non_loopback_address_warns_in_one_line(tmp_path: Path) -> None:
    err = _stderr_at_start(tmp_path, ["--host", "0.0.0.0"])
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [
        "trackline: warning: serving plaintext on 0.0.0.0, which is not a loopback address:"
        " tokens and data cross the network unencrypted (give --tls-cert and --tls-key)"
    ]


@pytest.mark.usefixtures("wildcard_host")
def test_tls_or_loopback_does_not_warn(tmp_path: Path, pki: Pki) -> None:
    assert "warning" not in _stderr_at_start(tmp_path, ["--host", "127.0.0.1"])
    assert "warning" not in _stderr_at_start(
        tmp_path, ["--host", "0.0.0.0", *_tls_args(pki.server)]
    )


# Limits


def test_request_headers_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    client = TracklineClient(srv.address, retry_seconds=0)
    client.get_experiment("0", metadata=[("x-padding", "a" * 4096)])
    with pytest.raises(trackline.ResourceExhausted):
        client.get_experiment("0", metadata=[("x-padding", "a" * 9000)])
    client.close()
