"""Artifact roots as the server reads them (--artifact-root) and the rules for an
experiment's own artifact location."""

from __future__ import annotations

import argparse

import pytest
from trackline_server.artifact_roots import Root, check_location, parse_root
from trackline_server.config import (
    Settings,
    StartupError,
    add_arguments,
    artifact_root,
    from_args,
)
from trackline_server.errors import InvalidArgument


def test_roots_parse_by_scheme() -> None:
    assert parse_root("s3://bucket/a/b/") == Root("s3", "bucket", "a/b")
    assert parse_root("s3://bucket") == Root("s3", "bucket", "")
    assert parse_root("file:///srv/art") == Root("file", "/srv/art")
    assert parse_root("/srv/art") == Root("file", "/srv/art")
    assert parse_root("gs://bucket/x") is None


def test_the_server_root_keeps_uris_and_makes_paths_absolute() -> None:
    assert artifact_root("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert artifact_root("s3://bucket") == "s3://bucket"
    assert artifact_root("file:///srv/art") == "/srv/art"
    assert artifact_root("rel").startswith("/")
    for bad in ("s3:///prefix", "gs://b/p", ""):
        with pytest.raises(StartupError):
            artifact_root(bad)


def test_local_locations_must_lie_under_a_local_server_root() -> None:
    check_location("/srv/art/team", "/srv/art")
    check_location("file:///srv/art/team", "/srv/art")
    check_location("s3://other/x", "/srv/art")
    check_location("s3://other/x", "s3://bucket/p")
    for location, root in [
        ("/srv/other", "/srv/art"),
        ("/srv/art-2", "/srv/art"),
        ("/srv/art/../x", "/srv/art"),
        ("/srv/art/x", "s3://bucket/p"),
        ("s3:///x", "/srv/art"),
        ("hdfs://x/y", "/srv/art"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            check_location(location, root)
        assert info.value.reason == "INVALID_ARTIFACT_LOCATION"


def settings(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(list(argv)))


def test_s3_endpoint_and_presigned_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRACKLINE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    s = settings()
    assert (s.s3_endpoint_url, s.presigned_urls) == (None, True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic")
    assert settings().s3_endpoint_url == "http://generic"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only")
    assert settings().s3_endpoint_url == "http://s3-only"
    monkeypatch.setenv("TRACKLINE_S3_ENDPOINT_URL", "http://ours")
    assert settings().s3_endpoint_url == "http://ours"
    flagged = settings("--s3-endpoint-url", "http://flag", "--presigned-urls", "off")
    assert flagged.s3_endpoint_url == "http://flag"
    assert flagged.presigned_urls is False
    with pytest.raises(StartupError, match="on or off"):
        settings("--presigned-urls", "maybe")
