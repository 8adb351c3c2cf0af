"""The permission table covers every RPC the server serves, and nothing else, and every
request field it names exists."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from trackline_server.app import SERVED
from trackline_server.auth.permissions import RULES
from trackline_server.auth.roles import Permission
from trackline_server.auth.scopes import Filtered


def _served() -> dict[str, MethodDescriptor]:
    pool = descriptor_pool.Default()
    methods = {}
    for name in SERVED:
        for method in pool.FindServiceByName(name).methods:
            methods[f"/{name}/{method.name}"] = method
    return methods


def test_every_served_rpc_has_a_rule() -> None:
    missing = sorted(set(_served()) - set(RULES))
    assert missing == [], f"add these RPCs to auth/permissions.py RULES: {missing}"


def test_every_rule_is_of_a_served_rpc() -> None:
    assert sorted(set(RULES) - set(_served())) == []


def test_only_health_checks_are_open() -> None:
    open_ = sorted(m for m, rule in RULES.items() if rule.permission is Permission.OPEN)
    assert open_ == [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/List",
        "/grpc.health.v1.Health/Watch",
    ]


def _resolves(message: Descriptor, path: str) -> bool:
    for part in path.split("."):
        field = message.fields_by_name.get(part)
        if field is None:
            return False
        if field.message_type is not None:
            message = field.message_type
    return True


@pytest.mark.parametrize("method", sorted(RULES))
def test_the_fields_a_rule_names_exist(method: str) -> None:
    target = RULES[method].target
    if isinstance(target, Filtered) or method not in _served():
        return
    request = _served()[method].input_type
    paths: list[str] = []
    for field in dataclasses.fields(target):  # type: ignore[arg-type]
        value = getattr(target, field.name)
        if isinstance(value, str):
            paths.append(value)
        elif isinstance(value, tuple):
            paths.extend(v for v in value if isinstance(v, str))
    for path in paths:
        assert _resolves(request, path), f"{method}: {request.full_name} has no {path}"


def test_writes_need_a_writer_and_reads_a_reader() -> None:
    # Every Get/Search/List/Resolve/Watch/Download reads; everything else of our services
    # writes or administers.
    reading = ("Get", "Search", "List", "Resolve", "Watch", "Stream", "Download", "Who")
    for method, rule in RULES.items():
        if not method.startswith("/trackline.v1.") or method.endswith("/StreamMetrics"):
            continue
        name = method.rsplit("/", 1)[-1]
        if name.startswith(reading) and not name.startswith("ListTokens"):
            assert rule.permission is Permission.READ, method
        elif name.startswith("CreateArtifactDownloadUrl"):
            assert rule.permission is Permission.READ, method
        else:
            assert rule.permission in (Permission.WRITE, Permission.ADMIN), method
