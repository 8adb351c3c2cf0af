"""Every RPC of every service, called on a real server (over TLS and mutual TLS, on SQLite and
PostgreSQL) with no token, a wrong one, an expired one, a revoked one, and tokens of each
role: the refusals are the ones the permission table says, with the reason a caller can act
on and never the secret, and nothing a refused call carried was stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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
from tests.support.tls import Pki, make_pki

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKLINE_TOKEN", raising=False)


@dataclass
class Secured:
    """A server with tokens over TLS (``mutual``: also with client certificates), and what a
    client needs to reach it."""

    server: ServerProcess
    pki: Pki
    mutual: bool

    @property
    def uri(self) -> str:
        return f"grpcs://{self.server.address}"

    def client_files(self) -> dict[str, Path]:
        files = {"ca_file": self.pki.ca}
        if self.mutual:
            files |= {"client_cert": self.pki.client.cert, "client_key": self.pki.client.key}
        return files

    def channel(self) -> grpc.Channel:
        client = self.pki.client
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.read_bytes(),
            private_key=client.key.read_bytes() if self.mutual else None,
            certificate_chain=client.cert.read_bytes() if self.mutual else None,
        )
        return grpc.secure_channel(self.server.address, credentials)


@pytest.fixture(
    params=[("sqlite", "tls"), ("sqlite", "mutual tls"), ("postgresql", "tls"),
            ("postgresql", "mutual tls")],
    ids=lambda p: "-".join(p).replace(" ", "-"),
)  # fmt: skip
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Secured:
    backend, transport = request.param
    pki = make_pki(tmp_path / "pki")
    mutual = transport == "mutual tls"
    args = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    if mutual:
        args += ["--tls-client-ca", str(pki.ca)]
    return Secured(start_secured(tmp_path, store_url(backend, tmp_path), args), pki, mutual)


@pytest.fixture
def admin(secured: Secured) -> Iterator[TracklineClient]:
    client = TracklineClient(
        secured.uri, token=BOOTSTRAP, retry_seconds=5, **secured.client_files()
    )
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
    secured: Secured, admin: TracklineClient
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
    with secured.channel() as channel:
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
