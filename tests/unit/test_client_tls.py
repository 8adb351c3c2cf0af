"""The client's TLS settings (trackline/_tls.py, and how _uri.py reads them): arguments and
variables, the files checked at once, the errors naming their setting, TLS without a scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
from trackline import InvalidTlsSettings, InvalidUri, TracklineClient
from trackline._sender import MetricSender
from trackline._tls import connection_failure_hint, load_tls

from tests.support.tls import Pki, make_pki

VARIABLES = ("TRACKLINE_CA_FILE", "TRACKLINE_CLIENT_CERT", "TRACKLINE_CLIENT_KEY")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _no_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*VARIABLES, "TRACKLINE_URI"):
        monkeypatch.delenv(name, raising=False)


def test_nothing_set_is_system_roots_and_plaintext_stays_plaintext() -> None:
    tls = load_tls()
    assert not tls.configured
    assert tls.root_certificates is None and tls.private_key is None
    assert TracklineClient("localhost:1").uri == "localhost:1"
    assert TracklineClient("grpcs://localhost:1").uri == "grpcs://localhost:1"


def test_arguments_and_variables_read_the_same_files(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_argument = load_tls(pki.ca, pki.client.cert, pki.client.key)
    monkeypatch.setenv("TRACKLINE_CA_FILE", str(pki.ca))
    monkeypatch.setenv("TRACKLINE_CLIENT_CERT", str(pki.client.cert))
    monkeypatch.setenv("TRACKLINE_CLIENT_KEY", str(pki.client.key))
    assert load_tls() == by_argument
    assert by_argument.root_certificates == pki.ca.read_bytes()
    assert by_argument.certificate_chain == pki.client.cert.read_bytes()
    assert "PRIVATE KEY" not in repr(by_argument)  # the key's contents stay out of logs


def test_an_argument_replaces_its_variable(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLINE_CA_FILE", "/no/such/ca.pem")
    assert load_tls(ca_file=pki.other_ca).ca_file == str(pki.other_ca)


def test_a_ca_file_without_a_scheme_asks_for_tls(pki: Pki) -> None:
    assert TracklineClient("localhost:1", ca_file=pki.ca).uri == "grpcs://localhost:1"
    sender = MetricSender("localhost:1", ca_file=pki.ca)
    assert sender.uri == "grpcs://localhost:1"
    sender.close()


@pytest.mark.parametrize("uri", ["http://localhost:1", "grpc://localhost:1"])
def test_a_plaintext_scheme_with_tls_settings_is_refused(pki: Pki, uri: str) -> None:
    with pytest.raises(InvalidUri, match="a CA file is set"):
        TracklineClient(uri, ca_file=pki.ca)
    with pytest.raises(InvalidUri, match="a client certificate is set"):
        TracklineClient(uri, client_cert=pki.client.cert, client_key=pki.client.key)


def test_a_missing_file_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLINE_CA_FILE", "/no/such/ca.pem")
    with pytest.raises(InvalidTlsSettings) as exc:
        TracklineClient("grpcs://localhost:1")
    assert str(exc.value) == (
        "TRACKLINE_CA_FILE '/no/such/ca.pem': cannot read it: No such file or directory"
    )


def test_a_missing_file_names_its_argument() -> None:
    with pytest.raises(InvalidTlsSettings, match=r"^ca_file= '/no/such/ca.pem': cannot read"):
        TracklineClient("grpcs://localhost:1", ca_file="/no/such/ca.pem")


def test_an_unreadable_file_names_its_variable(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKLINE_CLIENT_CERT", str(pki.client.cert))
    monkeypatch.setenv("TRACKLINE_CLIENT_KEY", str(tmp_path))  # a directory: unreadable
    with pytest.raises(InvalidTlsSettings, match=r"^TRACKLINE_CLIENT_KEY .*: cannot read it"):
        load_tls()


@pytest.mark.parametrize("given", ["TRACKLINE_CLIENT_CERT", "TRACKLINE_CLIENT_KEY"])
def test_one_half_of_the_client_pair_alone_is_refused(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv(given, str(pki.client.cert))
    other = ({"TRACKLINE_CLIENT_CERT", "TRACKLINE_CLIENT_KEY"} - {given}).pop()
    with pytest.raises(InvalidTlsSettings, match=f"^{given} is set but {other} is not"):
        load_tls()


def test_one_half_of_the_client_pair_as_an_argument_is_refused(pki: Pki) -> None:
    with pytest.raises(InvalidTlsSettings, match="^client_cert= is set but client_key= is not"):
        TracklineClient("grpcs://localhost:1", client_cert=pki.client.cert)


def test_files_that_are_not_what_they_should_be_are_refused(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(InvalidTlsSettings, match="does not hold a PEM CA certificate bundle"):
        load_tls(ca_file=pki.client.key)
    with pytest.raises(InvalidTlsSettings, match="does not hold a PEM private key"):
        load_tls(client_cert=pki.client.cert, client_key=pki.client.cert)
    with pytest.raises(InvalidTlsSettings, match="client_key= .* is not the key of"):
        load_tls(client_cert=pki.client.cert, client_key=pki.other_client.key)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(InvalidTlsSettings, match="is encrypted"):
        load_tls(client_cert=pki.client.cert, client_key=encrypted)
    with pytest.raises(InvalidTlsSettings, match="^ca_file= is empty"):
        load_tls(ca_file="")


def test_an_empty_variable_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKLINE_CA_FILE", "")
    assert not load_tls().configured


@pytest.mark.parametrize(
    ("details", "tls", "expected"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Tls"
            " handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL"
            " routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: OK",
            True,
            "the TLS handshake failed (CERTIFICATE_VERIFY_FAILED: certificate has expired)",
        ),
        (
            "last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE):"
            " SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:"
            " Invalid certificate verification context: OK",
            True,
            "the server may speak plaintext",
        ),
        ("last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed", True, "client certificate"),
        ("last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed", False, "it may serve TLS"),
    ],
)
def test_a_failed_handshake_is_explained(details: str, tls: bool, expected: str) -> None:
    hint = connection_failure_hint(details, tls)
    assert hint is not None and expected in hint


def test_a_server_that_is_down_gets_no_tls_explanation() -> None:
    details = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1:"
    assert connection_failure_hint(details + " Connection refused", True) is None
