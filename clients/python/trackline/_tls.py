"""The client's TLS settings: which certificates a TLS channel trusts and presents.

A TLS channel (a ``grpcs://`` or ``https://`` URI, see ``_uri``) verifies the server against
the system's root certificates, or against the PEM bundle of ``ca_file`` (default the
environment variable ``TRACKLINE_CA_FILE``), e.g. a private CA's. For mutual TLS it presents
``client_cert`` with its key ``client_key`` (default ``TRACKLINE_CLIENT_CERT`` and
``TRACKLINE_CLIENT_KEY``; one without the other is an error). An argument replaces its
variable. The files are read once, when the client is made: a file that is missing,
unreadable or not the PEM it should be raises ``InvalidTlsSettings`` naming the argument or
variable, before any call.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field

import grpc

CA_FILE_VARIABLE = "TRACKLINE_CA_FILE"
CLIENT_CERT_VARIABLE = "TRACKLINE_CLIENT_CERT"
CLIENT_KEY_VARIABLE = "TRACKLINE_CLIENT_KEY"
_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
_ENCRYPTED_KEY = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


class InvalidTlsSettings(ValueError):
    """A CA file, client certificate or client key the client cannot use (module docstring);
    the message names the argument or environment variable it came from."""


@dataclass(frozen=True)
class ClientTls:
    """The TLS settings of a client's channels: the files named (None: not set; no CA file
    means the system's root certificates) and what they hold."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)

    @property
    def configured(self) -> bool:
        """Whether a CA file or a client certificate is set: they only serve TLS."""
        return self.ca_file is not None or self.client_cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )


def load_tls(
    ca_file: str | os.PathLike[str] | None = None,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
) -> ClientTls:
    """The settings from the arguments, else from the environment, with the files read and
    checked; ``InvalidTlsSettings`` for the first one that cannot serve."""
    ca = _setting(ca_file, "ca_file", CA_FILE_VARIABLE)
    cert = _setting(client_cert, "client_cert", CLIENT_CERT_VARIABLE)
    key = _setting(client_key, "client_key", CLIENT_KEY_VARIABLE)
    if (cert is None) != (key is None):
        given = cert or key
        assert given is not None
        raise InvalidTlsSettings(
            f"{given.source} is set but {_other(given.source)} is not: mutual TLS needs both the"
            " client certificate and its key"
        )
    roots = _read(ca, "a PEM CA certificate bundle") if ca else None
    chain = _read(cert, "a PEM certificate") if cert else None
    private_key = _read(key, "a PEM private key", _PRIVATE_KEY) if key else None
    if cert is not None and key is not None and private_key is not None:
        _check_pair(cert, key, private_key)
    return ClientTls(
        ca.path if ca else None,
        cert.path if cert else None,
        key.path if key else None,
        roots,
        chain,
        private_key,
    )


@dataclass(frozen=True)
class _Setting:
    path: str
    source: str  # "ca_file=" for an argument, "TRACKLINE_CA_FILE" for the variable


def _setting(value: str | os.PathLike[str] | None, argument: str, variable: str) -> _Setting | None:
    if value is not None:
        path, source = os.fspath(value), f"{argument}="
    else:
        path, source = os.environ.get(variable, ""), variable
        if not path.strip():  # unset, or set to nothing: not set
            return None
    if not path.strip():
        raise InvalidTlsSettings(f"{source} is empty; it must name a PEM file")
    return _Setting(path, source)


def _other(source: str) -> str:
    """The other half of a certificate/key pair, named as ``source`` is."""
    pairs = {
        "client_cert=": "client_key=",
        "client_key=": "client_cert=",
        CLIENT_CERT_VARIABLE: CLIENT_KEY_VARIABLE,
        CLIENT_KEY_VARIABLE: CLIENT_CERT_VARIABLE,
    }
    return pairs[source]


def _read(setting: _Setting, what: str, marker: re.Pattern[bytes] | None = None) -> bytes:
    try:
        with open(setting.path, "rb") as file:
            content = file.read()
    except OSError as err:
        raise InvalidTlsSettings(
            f"{setting.source} {setting.path!r}: cannot read it: {err.strerror}"
        ) from None
    found = marker.search(content) is not None if marker else _CERTIFICATE in content
    if not found:
        raise InvalidTlsSettings(f"{setting.source} {setting.path!r} does not hold {what}")
    return content


def _check_pair(cert: _Setting, key: _Setting, private_key: bytes) -> None:
    """That the key is unencrypted and the certificate's (gRPC would only fail the handshake,
    with an error naming neither file)."""
    if any(marker in private_key for marker in _ENCRYPTED_KEY):
        raise InvalidTlsSettings(
            f"{key.source} {key.path!r} is encrypted; gRPC needs the key unencrypted"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert.path, key.path, password=lambda: b"")
    except (ssl.SSLError, OSError):
        raise InvalidTlsSettings(
            f"{key.source} {key.path!r} is not the key of the certificate in {cert.source}"
            f" {cert.path!r}"
        ) from None


def connection_failure_hint(details: str, tls: bool) -> str | None:
    """What a failed connection's gRPC error ``details`` says about TLS, as a clause for the
    client's "cannot reach the server" error; None when it says nothing about it (the server
    is down, say)."""
    handshake = re.search(r"handshake failed.*?OPENSSL_internal:([A-Z_]+)(?:: ([^:]+))?", details)
    if handshake is not None:
        reason = handshake.group(1)
        text = f"{reason}: {handshake.group(2)}" if handshake.group(2) else reason
        if reason == "WRONG_VERSION_NUMBER":
            return f"the TLS handshake failed ({text}): the server may speak plaintext"
        return (
            f"the TLS handshake failed ({text}): check that {CA_FILE_VARIABLE} (or the system's"
            " roots) holds the CA of the server's certificate, and that it is valid"
        )
    if "Socket closed" in details or "Connection reset" in details:
        if tls:
            return (
                "the server closed the connection during the TLS handshake: it may require a"
                f" client certificate ({CLIENT_CERT_VARIABLE} and {CLIENT_KEY_VARIABLE}) signed"
                " by its client CA"
            )
        return (
            "the server closed the plaintext connection at once: it may serve TLS (use"
            " grpcs://host:port)"
        )
    return None
