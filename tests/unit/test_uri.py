"""Server URI parsing (trackline/_uri.py): every accepted form, and every refused one."""

from __future__ import annotations

import pytest
import trackline
from trackline import InvalidUri, TracklineClient
from trackline._uri import DEFAULT_PORT, Target, parse_uri, resolve_uri


@pytest.mark.parametrize(
    ("uri", "host", "port", "tls"),
    [
        ("localhost", "localhost", 50051, False),
        ("localhost:8080", "localhost", 8080, False),
        ("127.0.0.1:1", "127.0.0.1", 1, False),
        ("127.0.0.1:65535", "127.0.0.1", 65535, False),
        ("trackline-server.internal", "trackline-server.internal", 50051, False),
        ("my_service:50052", "my_service", 50052, False),
        ("[::1]", "::1", 50051, False),
        ("[::1]:50052", "::1", 50052, False),
        ("[2001:db8::7]:9000", "2001:db8::7", 9000, False),
        ("http://localhost", "localhost", 50051, False),
        ("http://localhost:50051", "localhost", 50051, False),
        ("http://localhost:50051/", "localhost", 50051, False),
        ("HTTP://Example.COM:1234", "Example.COM", 1234, False),
        ("grpc://10.0.0.5:7000", "10.0.0.5", 7000, False),
        ("grpc://[::1]:7000", "::1", 7000, False),
        ("https://tracking.example.com", "tracking.example.com", 50051, True),
        ("https://tracking.example.com:443", "tracking.example.com", 443, True),
        ("grpcs://[::1]:8443", "::1", 8443, True),
        ("  localhost:5000\n", "localhost", 5000, False),
    ],
)
def test_accepted_forms(uri: str, host: str, port: int, tls: bool) -> None:
    target = parse_uri(uri)
    assert target == Target(host, port, tls)
    assert parse_uri(str(target)) == target  # the canonical form parses back to itself


def test_default_port_is_the_documented_one() -> None:
    assert DEFAULT_PORT == 50051
    assert parse_uri("localhost").address == "localhost:50051"
    assert parse_uri("[::1]").address == "[::1]:50051"
    assert str(parse_uri("https://h")) == "grpcs://h:50051"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("", "no host"),
        ("http://", "no host"),
        ("localhost:0", "the port must be a number from 1 to 65535, not '0'"),
        ("localhost:65536", "not '65536'"),
        ("127.0.0.1:99999", "not '99999'"),
        ("[::1]:0", "not '0'"),
        ("[::1]:65536", "not '65536'"),
        ("localhost:", "not ''"),
        ("localhost:-1", "not '-1'"),
        ("localhost:+80", "not '+80'"),
        ("localhost: 80", "not ' 80'"),
        ("localhost:8o", "not '8o'"),
        ("localhost:\u0661\u0662", "the port must be a number"),
        ("localhost:" + "9" * 5000, "the port must be a number"),
        ("::1", "write an IPv6 address in brackets"),
        ("::1:50051", "write an IPv6 address in brackets"),
        ("[::1", "needs a closing ']'"),
        ("[::1]50051", "expected ':port'"),
        ("[not-v6]:1", "is not an IPv6 address"),
        ("[127.0.0.1]:1", "is not an IPv6 address"),
        ("http://localhost:50051/api", "a path is not allowed"),
        ("localhost:50051/", "a path is not allowed"),
        ("http://localhost:50051//", "a path is not allowed"),
        ("http://localhost?x=1", "a query is not allowed"),
        ("http://localhost#top", "a fragment is not allowed"),
        ("http://user:pw@localhost", "a user is not allowed"),
        ("unix:///tmp/trackline.sock", "unsupported scheme 'unix'"),
        ("dns:///localhost:50051", "unsupported scheme 'dns'"),
        ("postgresql://localhost", "unsupported scheme 'postgresql'"),
        ("ipv4:127.0.0.1:50051", "write an IPv6 address in brackets"),
        ("local host", "is not a host name"),
        ("-bad:1", "is not a host name"),
        ("h\u00e9te:1", "is not a host name"),
        ("x" * 300, "is not a host name"),
    ],
)
def test_refused_forms_name_the_accepted_ones(uri: str, problem: str) -> None:
    with pytest.raises(InvalidUri) as exc:
        parse_uri(uri)
    message = str(exc.value)
    assert problem in message
    assert "use host[:port], [ipv6]:port, http:// or grpc://" in message
    assert "the default port is 50051" in message
    assert len(message) < 400 and "\n" not in message  # a long value is echoed truncated


def test_invalid_uri_is_a_value_error_exported_by_the_package() -> None:
    assert issubclass(InvalidUri, ValueError) and "InvalidUri" in trackline.__all__


def test_the_client_and_set_tracking_uri_check_at_once() -> None:
    with pytest.raises(InvalidUri):
        TracklineClient("127.0.0.1:99999")
    with pytest.raises(InvalidUri):
        trackline.set_tracking_uri("http://localhost:50051/path")
    client = TracklineClient("http://127.0.0.1:5000")
    assert client.uri == "127.0.0.1:5000" and client.target.port == 5000


def test_environment_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKLINE_URI", raising=False)
    assert resolve_uri(None) == Target("localhost", 50051, False)
    monkeypatch.setenv("TRACKLINE_URI", "")
    assert resolve_uri(None) == Target("localhost", 50051, False)
    monkeypatch.setenv("TRACKLINE_URI", "grpcs://example.com")
    assert resolve_uri(None) == Target("example.com", 50051, True)
    assert resolve_uri("other:1") == Target("other", 1, False)
    monkeypatch.setenv("TRACKLINE_URI", "example.com:70000")
    with pytest.raises(InvalidUri, match="70000"):
        TracklineClient()
