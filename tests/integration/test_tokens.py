"""Access tokens on a real server (SQLite and PostgreSQL): TokenService through the client and
the ``trackline tokens`` / ``trackline whoami`` commands, as the ``--auth-token`` admin; then
the tokens it creates in use: admitted with their role, refused once revoked or expired."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from trackline import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TokenInfo,
    TracklineClient,
    Unauthenticated,
)
from trackline.v1 import auth_pb2 as apb

from tests.support.databases import store_url
from tests.support.servers import ServerProcess, start_server

BOOTSTRAP = "bootstrap-secret"


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKLINE_TOKEN", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> ServerProcess:
    """A server whose one configured token is the --auth-token admin."""
    return start_server(
        tmp_path, store_url(request.param, tmp_path), extra_args=["--auth-token", BOOTSTRAP]
    )


@pytest.fixture
def admin(secured: ServerProcess) -> Iterator[TracklineClient]:
    client = TracklineClient(secured.address, token=BOOTSTRAP, retry_seconds=5)
    yield client
    client.close()


def _client(server: ServerProcess, token: str | None) -> TracklineClient:
    return TracklineClient(server.address, token=token, retry_seconds=0)


def _cli(
    server: ServerProcess, *args: str, token: str | None = BOOTSTRAP
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRACKLINE_TOKEN"}
    if token is not None:
        env["TRACKLINE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "trackline.cli", "--uri", server.address, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _near_now(moment: dt.datetime | None, offset_s: float = 0) -> bool:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    return moment is not None and abs((moment - now).total_seconds()) < 30


def test_create_list_revoke(admin: TracklineClient) -> None:
    created = admin.create_token(
        "ci", "writer", experiments=["0", "team-a/*"], models=["fraud"], expires_in=3600
    )
    token = created.token
    assert created.secret.startswith("tlk_") and created.secret not in repr(created)
    assert (token.name, token.role, token.experiments, token.models) == (
        "ci", "writer", ("0", "team-a/*"), ("fraud",),
    )  # fmt: skip
    assert _near_now(token.created) and _near_now(token.expires, 3600) and token.revoked is None
    assert token.created_by == "admin"
    reader = admin.create_token("dashboards", "reader", expires_in=dt.timedelta(days=30)).token
    ops = admin.create_token("ops", "admin").token
    assert reader.expires is not None and ops.expires is None

    assert [t.name for t in admin.list_tokens()] == ["ci", "dashboards", "ops"]
    assert admin.list_tokens()[0] == token

    revoked = admin.revoke_token("dashboards")
    assert revoked.name == "dashboards" and _near_now(revoked.revoked)
    assert admin.revoke_token("dashboards") == revoked  # a revoked token, unchanged
    assert [t.name for t in admin.list_tokens()] == ["ci", "ops"]
    assert [t.name for t in admin.list_tokens(include_revoked=True)] == ["ci", "dashboards", "ops"]
    with pytest.raises(NotFound) as err:
        admin.revoke_token("nobody")
    assert err.value.reason == "TOKEN_NOT_FOUND"


def test_a_name_is_given_again_after_revoke(admin: TracklineClient) -> None:
    first = admin.create_token("ci", "reader")
    with pytest.raises(AlreadyExists) as err:
        admin.create_token("ci", "writer")
    assert err.value.reason == "TOKEN_ALREADY_EXISTS"
    admin.revoke_token("ci")
    second = admin.create_token("ci", "writer")
    assert second.secret != first.secret and second.token.role == "writer"
    listed = admin.list_tokens(include_revoked=True)
    assert [(t.name, t.role, t.revoked is None) for t in listed] == [
        ("ci", "reader", False),
        ("ci", "writer", True),
    ]
    assert admin.revoke_token("ci").role == "writer"  # the one not revoked
    assert admin.revoke_token("ci").role == "writer"  # then the latest, unchanged


def test_listing_pages_through_by_name(admin: TracklineClient) -> None:
    names = ["b", "a", "c.1", "C", "d@x", "e-1", "e_1"]
    for name in names:
        admin.create_token(name, "reader")
    admin.revoke_token("c.1")
    admin.create_token("c.1", "writer")
    everything = [(t.name, t.role) for t in admin.list_tokens(include_revoked=True)]
    assert everything == [
        ("C", "reader"), ("a", "reader"), ("b", "reader"), ("c.1", "reader"),
        ("c.1", "writer"), ("d@x", "reader"), ("e-1", "reader"), ("e_1", "reader"),
    ]  # fmt: skip
    for size in (1, 2, 3):
        paged = admin.list_tokens(include_revoked=True, page_size=size)
        assert [(t.name, t.role) for t in paged] == everything
    assert len(admin.list_tokens(page_size=2)) == len(names)
    req = apb.ListTokensRequest(page_size=2)
    first = admin.token_calls.ListTokens(req)
    req.include_revoked = True
    req.page_token = first.next_page_token
    with pytest.raises(InvalidArgument) as err:
        admin.token_calls.ListTokens(req)
    assert err.value.reason == "INVALID_PAGE_TOKEN"


def test_refused_requests(admin: TracklineClient) -> None:
    refusals = [
        (lambda: admin.create_token("admin", "reader"), "INVALID_TOKEN_NAME"),
        (lambda: admin.create_token("has space", "reader"), "INVALID_TOKEN_NAME"),
        (lambda: admin.create_token("x", apb.ROLE_UNSPECIFIED), "INVALID_ROLE"),
        (lambda: admin.create_token("x", 7), "INVALID_ROLE"),
        (lambda: admin.create_token("x", "admin", experiments=["0"]), "INVALID_SCOPE"),
        (lambda: admin.create_token("x", "admin", models=["m*"]), "INVALID_SCOPE"),
        (lambda: admin.create_token("x", "reader", experiments=["*"]), "INVALID_SCOPE"),
        (lambda: admin.create_token("x", "reader", experiments=["Default"]), "INVALID_SCOPE"),
        (lambda: admin.create_token("x", "reader", expires_in=-60), "INVALID_EXPIRATION"),
        (lambda: admin.create_token("x", "reader", expires_in=0), "INVALID_EXPIRATION"),
        (
            lambda: admin.create_token("x", "reader", expires_in=dt.timedelta(days=3660)),
            "INVALID_EXPIRATION",
        ),
    ]
    for attempt, reason in refusals:
        with pytest.raises(InvalidArgument) as err:
            attempt()
        assert err.value.reason == reason, err.value
    with pytest.raises(ValueError, match="reader, writer or admin"):
        admin.create_token("x", "owner")
    assert admin.list_tokens(include_revoked=True) == []


def test_cli(secured: ServerProcess) -> None:
    made = _cli(
        secured, "tokens", "create", "ci", "--role", "writer", "--experiments", "0, team-a/*",
        "--models", "fraud", "--expires", "30d",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and secret.startswith("tlk_")
    assert "shown this once" in made.stderr and secret not in made.stderr
    assert _cli(secured, "tokens", "create", "viewer", "--role", "reader").returncode == 0

    listed = _cli(secured, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "NAME", "ROLE", "EXPERIMENTS", "MODELS", "CREATED", "EXPIRES", "REVOKED", "BY",
    ]  # fmt: skip
    assert [r.split()[:4] for r in rows] == [
        ["ci", "writer", "0,team-a/*", "fraud"],
        ["viewer", "reader", "all", "all"],
    ]
    assert rows[1].split()[-3:] == ["never", "-", "admin"]
    assert secret not in listed.stdout

    revoked = _cli(secured, "tokens", "revoke", "viewer")
    assert revoked.returncode == 0 and revoked.stdout.startswith("revoked token viewer at ")
    assert len(_cli(secured, "tokens", "list").stdout.splitlines()) == 2
    everything = _cli(secured, "tokens", "list", "--all")
    assert [r.split()[0] for r in everything.stdout.splitlines()[1:]] == ["ci", "viewer"]

    for args, says in [
        (("tokens", "create", "ci", "--role", "reader"), "TOKEN_ALREADY_EXISTS"),
        (("tokens", "create", "x", "--role", "owner"), "invalid choice"),
        (("tokens", "create", "x", "--role", "reader", "--expires", "soon"), "30d"),
        (("tokens", "create", "x", "--role", "admin", "--models", "m"), "INVALID_SCOPE"),
        (("tokens", "revoke", "nobody"), "TOKEN_NOT_FOUND"),
    ]:
        failed = _cli(secured, *args)
        assert failed.returncode == 1 and failed.stdout == ""
        assert len(failed.stderr.strip().splitlines()) == 1 and says in failed.stderr, args
    denied = _cli(secured, "tokens", "list", token=None)
    assert denied.returncode == 1 and "MISSING_TOKEN" in denied.stderr


def test_whoami_of_the_bootstrap_token(secured: ServerProcess, admin: TracklineClient) -> None:
    me = admin.whoami()
    assert (me.name, me.role, me.experiments, me.models) == ("admin", "admin", (), ())
    assert admin.token_calls.WhoAmI(apb.WhoAmIRequest()).authenticated
    shown = _cli(secured, "whoami")
    assert shown.returncode == 0, shown.stderr
    assert [line.split(None, 1) for line in shown.stdout.splitlines()] == [
        ["name", "admin"], ["role", "admin"], ["experiments", "all"], ["models", "all"],
        ["expires", "never"],
    ]  # fmt: skip


# The tokens in use (auth/authenticator.py admits them).


def test_a_created_token_is_admitted_with_its_role(
    secured: ServerProcess, admin: TracklineClient
) -> None:
    writer_secret = admin.create_token("ci", "writer").secret
    reader_secret = admin.create_token("viewer", "reader").secret
    scoped_secret = admin.create_token("scoped", "reader", experiments=["0", "team-*"]).secret
    writer, reader = _client(secured, writer_secret), _client(secured, reader_secret)
    me = writer.whoami()
    assert (me.name, me.role, me.created_by) == ("ci", "writer", "admin")
    assert writer.token_calls.WhoAmI(apb.WhoAmIRequest()).authenticated
    scoped = _client(secured, scoped_secret)
    assert (scoped.whoami().experiments, scoped.whoami().models) == (("0", "team-*"), ())
    scoped.close()
    experiment = writer.create_experiment("by-ci").experiment_id
    assert reader.get_experiment("0").name == "Default"
    with pytest.raises(PermissionDenied) as err:
        reader.create_experiment("by-viewer")
    assert err.value.reason == "ROLE_NOT_ALLOWED"
    for not_admin in (writer, reader):
        with pytest.raises(PermissionDenied) as err:
            not_admin.list_tokens()
        assert err.value.reason == "ROLE_NOT_ALLOWED"
    assert admin.get_experiment(experiment).name == "by-ci"  # the bootstrap token still works
    writer.close()
    reader.close()


def test_a_revoked_token_is_refused_at_once(secured: ServerProcess, admin: TracklineClient) -> None:
    secret = admin.create_token("ci", "writer").secret
    client = _client(secured, secret)
    assert client.get_experiment("0").name == "Default"
    admin.revoke_token("ci")
    with pytest.raises(Unauthenticated) as err:
        client.get_experiment("0")
    assert err.value.reason == "TOKEN_REVOKED" and secret not in str(err.value)
    admin.create_token("ci", "writer")  # the name given again does not bring the old secret back
    with pytest.raises(Unauthenticated):
        client.get_experiment("0")
    client.close()


def test_an_expired_token_is_refused(secured: ServerProcess, admin: TracklineClient) -> None:
    created = admin.create_token("short", "reader", expires_in=1)
    client = _client(secured, created.secret)
    assert client.get_experiment("0").name == "Default"
    assert created.token.expires is not None
    time.sleep(max(0.0, (created.token.expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.2)
    with pytest.raises(Unauthenticated) as err:
        client.get_experiment("0")
    assert err.value.reason == "TOKEN_EXPIRED" and created.secret not in str(err.value)
    client.close()


def test_a_secret_captured_from_the_cli_calls(secured: ServerProcess) -> None:
    made = _cli(secured, "tokens", "create", "svc@team", "--role", "reader", "--expires", "12h")
    assert made.returncode == 0, made.stderr
    shown = _cli(secured, "whoami", token=made.stdout.strip())
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert (fields["name"], fields["role"]) == ("svc@team", "reader")
    assert fields["expires"] != "never"


def test_a_server_without_tokens_requires_one_once_one_is_created(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    anonymous = _client(srv, None)
    me: TokenInfo = anonymous.whoami()
    assert (me.name, me.role) == ("", "admin")
    assert not anonymous.token_calls.WhoAmI(apb.WhoAmIRequest()).authenticated
    created = anonymous.create_token("first", "admin")
    assert created.token.created_by == ""
    with pytest.raises(Unauthenticated) as err:
        anonymous.get_experiment("0")
    assert err.value.reason == "MISSING_TOKEN"
    first = _client(srv, created.secret)
    assert first.whoami().name == "first" and first.get_experiment("0").name == "Default"
    anonymous.close()
    first.close()
