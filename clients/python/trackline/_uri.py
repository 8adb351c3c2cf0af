"""Server URIs: the forms the client accepts, and the gRPC channel each one opens.

Accepted (the port defaults to 50051 in every form; the scheme is case-insensitive):

- ``host``, ``host:port``, ``[ipv6]`` and ``[ipv6]:port``: plaintext, unless a CA file or a
  client certificate is set (``trackline._tls``: ``ca_file=``/``TRACKLINE_CA_FILE``,
  ``client_cert=``/``TRACKLINE_CLIENT_CERT``), which asks for TLS;
- ``http://host[:port]`` and ``grpc://host[:port]``: plaintext (with a CA file or client
  certificate set, ``InvalidUri``: they would be ignored);
- ``https://host[:port]`` and ``grpcs://host[:port]``: TLS, verified against the system's root
  certificates, or the CA file's; with a client certificate, mutual TLS. The server serves
  TLS itself (``--tls-cert``), or a TLS-terminating proxy in front of it does.

Anything else (another scheme, a user name, a path other than a bare trailing ``/``, a query,
a port outside 1..65535, a bare IPv6 address) raises ``InvalidUri``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ._tls import ClientTls

DEFAULT_PORT = 50051
DEFAULT_URI = f"localhost:{DEFAULT_PORT}"
_PLAINTEXT_SCHEMES = {"http", "grpc"}
_TLS_SCHEMES = {"https", "grpcs"}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_ACCEPTED = (
    "use host[:port], [ipv6]:port, http:// or grpc://host[:port] (plaintext), or https:// or"
    f" grpcs://host[:port] (TLS); the default port is {DEFAULT_PORT}"
)


class InvalidUri(ValueError):
    """A server URI (``TracklineClient(uri)``, ``set_tracking_uri``, ``--uri`` or
    ``TRACKLINE_URI``) that is not one of the accepted forms; the message names them."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"invalid Trackline URI {_shown(uri)}: {problem}; {_ACCEPTED}")
        self.uri = uri


@dataclass(frozen=True)
class Target:
    """A parsed server URI. ``str()`` gives its canonical form, which parses back to the same
    target: ``host:port`` for plaintext (also a valid gRPC target), ``grpcs://host:port`` for
    TLS."""

    host: str  # an IPv6 address without its brackets
    port: int
    tls: bool

    @property
    def address(self) -> str:
        """The gRPC target: ``host:port``, or ``[ipv6]:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"grpcs://{self.address}" if self.tls else self.address


def parse_uri(uri: str) -> Target:
    """Parses one of the accepted forms (module docstring); raises ``InvalidUri``."""
    if not isinstance(uri, str):
        raise InvalidUri(repr(uri), f"expected a string, not {type(uri).__name__}")
    text = uri.strip()
    tls = False
    scheme = _SCHEME.fullmatch(text)
    if scheme is not None:
        name = scheme.group(1).lower()
        if name not in _PLAINTEXT_SCHEMES | _TLS_SCHEMES:
            raise InvalidUri(uri, f"unsupported scheme {name!r}")
        tls = name in _TLS_SCHEMES
        text = scheme.group(2)
        if text.endswith("/"):  # "http://host:port/" as copied from a browser: no path
            text = text[:-1]
    if not text:
        raise InvalidUri(uri, "no host")
    for char, what in (("/", "a path"), ("?", "a query"), ("#", "a fragment"), ("@", "a user")):
        if char in text:
            raise InvalidUri(uri, f"{what} is not allowed")
    host, port_text = _split_host_port(uri, text)
    return Target(host, _port(uri, port_text), tls)


def resolve_uri(uri: str | None, tls: ClientTls | None = None) -> Target:
    """``uri``, else the environment variable ``TRACKLINE_URI``, else localhost:50051. With
    ``tls`` settings that name a CA file or a client certificate, a URI without a scheme is
    TLS, and a plaintext scheme is ``InvalidUri``."""
    text = uri or os.environ.get("TRACKLINE_URI") or DEFAULT_URI
    target = parse_uri(text)
    if tls is None or not tls.configured or target.tls:
        return target
    scheme = _SCHEME.fullmatch(text.strip())
    if scheme is not None:
        setting = "a CA file" if tls.ca_file is not None else "a client certificate"
        raise InvalidUri(
            text, f"it asks for plaintext, but {setting} is set (for TLS, use grpcs://)"
        )
    return Target(target.host, target.port, tls=True)


def open_channel(
    target: Target, tls: ClientTls, options: Sequence[tuple[str, Any]]
) -> grpc.Channel:
    """A channel to ``target``: TLS with ``tls``'s certificates, or plaintext."""
    if target.tls:
        return grpc.secure_channel(target.address, tls.credentials(), options)
    return grpc.insecure_channel(target.address, options)


def _split_host_port(uri: str, text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidUri(uri, "an IPv6 address needs a closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidUri(uri, f"{_shown(host)} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise InvalidUri(uri, "expected ':port' after the IPv6 address")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        raise InvalidUri(uri, "write an IPv6 address in brackets, e.g. [::1]:50051")
    host, colon, port_text = text.partition(":")
    if not _HOST_NAME.fullmatch(host):
        raise InvalidUri(uri, f"{_shown(host)} is not a host name or IPv4 address")
    return host, port_text if colon else None


def _port(uri: str, text: str | None) -> int:
    if text is None:
        return DEFAULT_PORT
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise InvalidUri(uri, f"the port must be a number from 1 to 65535, not {_shown(text)}")
    return int(text)


def _shown(value: str) -> str:
    """repr of a caller's value, truncated to 80 characters (as the server's errors.shown)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
