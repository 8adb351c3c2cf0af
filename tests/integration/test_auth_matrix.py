"""Every RPC of every service, called on a real server with no token, a wrong one, an expired
one, a revoked one, and tokens of each role: the refusals are the ones the permission table
says, with the reason a caller can act on, and nothing a refused call carried was stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trackline import TracklineClient
from trackline_server.auth.permissions import RULES
from trackline_server.auth.roles import Permission

from tests.support.auth import (
    BOOTSTRAP,
    Outcome,
    call,
    every_rpc,
    expired_token,
    path_of,
    revoked_token,
    start_secured,
    token,
)
from tests.support.databases import store_url
from tests.support.servers import ServerProcess

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKLINE_TOKEN", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> ServerProcess:
    return start_secured(tmp_path, store_url(request.param, tmp_path))


@pytest.fixture
def admin(secured: ServerProcess) -> Iterator[TracklineClient]:
    client = TracklineClient(secured.address, token=BOOTSTRAP, retry_seconds=5)
    yield client
    client.close()


def _stored(admin: TracklineClient) -> tuple[object, ...]:
    """What the store holds, as far as an empty request could have changed it."""
    experiments = admin.search_experiments()
    return (
        sorted(e.name for e in experiments),
        len(list(admin.search_runs([e.experiment_id for e in experiments]))),
        [m.name for m in admin.search_registered_models()],
        sorted(t.name for t in admin.list_tokens(include_revoked=True)),
    )


def test_every_rpc_refuses_what_its_permission_does_not_admit(
    secured: ServerProcess, admin: TracklineClient
) -> None:
    secrets = {
        "no token": None,
        "a wrong token": "tlk_not-a-token-of-this-server",
        "an expired token": expired_token(admin, "expired"),
        "a revoked token": revoked_token(admin, "revoked"),
    }
    reader = token(admin, "reader", "reader")
    writer = token(admin, "writer", "writer")
    before = _stored(admin)
    wrong: list[str] = []
    expected_reason = {
        "no token": "MISSING_TOKEN",
        "a wrong token": "INVALID_TOKEN",
        "an expired token": "TOKEN_EXPIRED",
        "a revoked token": "TOKEN_REVOKED",
    }
    with grpc.insecure_channel(secured.address) as channel:
        for method in every_rpc():
            path = path_of(method)
            needs = RULES[path].permission
            for what, secret in secrets.items():
                got = call(channel, method, secret)
                if got != Outcome(UNAUTHENTICATED, expected_reason[what], got.message):
                    wrong.append(f"{path} with {what}: {got}")
                if secret and secret in got.message:
                    wrong.append(f"{path} with {what}: the secret is in the message")
            for role, secret, allowed in (
                ("reader", reader, needs <= Permission.READ),
                ("writer", writer, needs <= Permission.WRITE),
            ):
                if not allowed:
                    got = call(channel, method, secret)
                    if got != Outcome(DENIED, "ROLE_NOT_ALLOWED", got.message):
                        wrong.append(f"{path} as a {role}: {got}")
                    elif f"'{role}'" not in got.message:  # names the token, not its secret
                        wrong.append(f"{path} as a {role}: {got.message!r}")
        assert _stored(admin) == before, "a refused call changed the store"
        # The roles that may make a call get past authentication and permissions (the
        # service then answers the empty request as it would for anyone).
        for method in every_rpc():
            path = path_of(method)
            needs = RULES[path].permission
            secret = reader if needs <= Permission.READ else writer
            if needs <= Permission.WRITE:
                got = call(channel, method, secret)
                if got.refused:
                    wrong.append(f"{path} as a {needs.name.lower()}r: refused {got}")
            got = call(channel, method, BOOTSTRAP)
            if got.refused:
                wrong.append(f"{path} as the admin: refused {got}")
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == 1  # SERVING, no token
    assert wrong == []
