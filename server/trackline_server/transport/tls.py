"""TLS for the server: the certificate files it serves, checked at start and reloaded on
SIGHUP for new connections while the open ones go on.

``ServerTls(files)`` reads and checks the files (``--tls-cert``, ``--tls-key``, and for mutual
TLS ``--tls-client-ca``) and holds the gRPC server credentials made from them. They are
gRPC's dynamic SSL credentials: gRPC asks ``ServerTls`` before each new handshake whether
the certificate changed (on one of its own threads), and ``reload()`` reads the files again and
hands the new ones to the next handshake. Connections already open keep the certificate they
were opened with, and their streams are not touched. A file that cannot be read or is not
the PEM it should be raises ``TlsFileError`` (one line naming the flag and the file); a failed
reload leaves the previous certificate in service.

With a client CA the handshake requires a client certificate signed by it: a client without
one is refused before any call reaches the server.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass

import grpc

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_ENCRYPTED_KEY = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


class TlsFileError(Exception):
    """A certificate, key or CA file the server cannot serve; the message is one line."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the server's TLS material is: PEM files, read at start and on every reload."""

    cert: str  # the certificate chain, the server's own certificate first
    key: str  # its private key, unencrypted
    client_ca: str | None = None  # CA certificates a client's certificate must chain to

    @property
    def mode(self) -> str:
        """How the server speaks: "TLS", or "mutual TLS" with a client CA."""
        return "mutual TLS" if self.client_ca else "TLS"


@dataclass(frozen=True)
class TlsMaterial:
    """The contents of ``TlsFiles``, checked: the chain and key match, the CA parses."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.cert_chain)], root_certificates=self.client_ca
        )


def read_material(files: TlsFiles) -> TlsMaterial:
    """Reads and checks the files; ``TlsFileError`` for the first one that does not serve."""
    cert_chain = _read(files.cert, "--tls-cert")
    key = _read(files.key, "--tls-key")
    client_ca = _read(files.client_ca, "--tls-client-ca") if files.client_ca else None
    if _CERTIFICATE not in cert_chain:
        raise TlsFileError(f"--tls-cert {files.cert} holds no PEM certificate")
    if any(marker in key for marker in _ENCRYPTED_KEY):
        raise TlsFileError(
            f"--tls-key {files.key} is encrypted; the server needs the key unencrypted"
            " (openssl pkey -in KEY -out PLAIN)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # parses both files and checks that the key is the certificate's
        context.load_cert_chain(files.cert, files.key, password=_no_password)
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                f"--tls-key {files.key} is not the key of the certificate in --tls-cert"
                f" {files.cert}"
            ) from None
        raise TlsFileError(
            f"--tls-cert {files.cert} and --tls-key {files.key} are not a PEM certificate"
            " chain and its private key"
        ) from None
    except OSError as err:  # changed between the read above and this one
        raise TlsFileError(f"cannot read --tls-cert or --tls-key: {err.strerror}") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        except ssl.SSLError:
            raise TlsFileError(
                f"--tls-client-ca {files.client_ca} holds no PEM CA certificate"
            ) from None
    return TlsMaterial(cert_chain, key, client_ca)


class ServerTls:
    """The server's credentials over ``files``; ``reload()`` serves the files' current
    contents to the handshakes that follow (module docstring)."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        material = read_material(files)
        self._lock = threading.Lock()  # gRPC asks from its own threads
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            material.configuration(),
            self._next_configuration,
            require_client_authentication=files.client_ca is not None,
        )

    def reload(self) -> None:
        """Reads the files again; new handshakes get them. ``TlsFileError`` (and the current
        certificate stays) when they do not serve."""
        configuration = read_material(self.files).configuration()
        with self._lock:
            self._pending = configuration

    def _next_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before each handshake: the reloaded certificate once, then None
        (no change) until the next reload. It must not raise: gRPC would fail the handshake."""
        with self._lock:
            configuration, self._pending = self._pending, None
        return configuration


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        raise TlsFileError(f"cannot read {flag} {path}: {err.strerror}") from None


def _no_password() -> bytes:
    """Stands in for OpenSSL's prompt on the terminal, which would hang a server start on an
    encrypted key that ``read_material`` did not recognise as one: the load then fails."""
    return b""


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` (as ``--host`` gives it) stands for is a loopback one:
    127.0.0.0/8, ::1 or a name resolving to them only. The wildcard ("", 0.0.0.0, ::) is not;
    neither is a name that does not resolve (the bind fails on it anyway)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if not name:
        return False
    try:
        addresses = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(a[4][0]).is_loopback for a in addresses)
