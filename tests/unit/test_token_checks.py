"""CreateToken's checks (names, roles, scopes, expiry) and the client's spellings of roles and
expiry (``--expires 30d``, ``expires_in=``), without a server."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest
from trackline._cli_tokens import parse_expiry
from trackline._tokens import CreatedToken, TokenInfo, _seconds, token_role
from trackline.v1 import auth_pb2 as apb
from trackline_server.auth import token_checks
from trackline_server.auth.roles import Role
from trackline_server.auth.tokens import SECRET_PREFIX, hash_secret, new_secret
from trackline_server.errors import InvalidArgument, ManyProblems


@pytest.mark.parametrize("name", ["ci", "a", "svc.deploy@team-a_1", "x" * 64, "ADMIN", "admin2"])
def test_valid_names(name: str) -> None:
    token_checks.check_name(name)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "needs a name"),
        ("x" * 65, "at most 64"),
        ("has space", "only letters"),
        ("slash/no", "only letters"),
        ("é", "only letters"),
        ("trailing\n", "only letters"),
        ("admin", "reserved"),
    ],
)
def test_invalid_names(name: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        token_checks.check_name(name)
    assert err.value.reason == "INVALID_TOKEN_NAME" and err.value.field == "name"
    assert says in err.value.message


def test_roles() -> None:
    assert token_checks.check_role(apb.ROLE_WRITER) is Role.WRITER
    for bad in (apb.ROLE_UNSPECIFIED, 4, -1):
        with pytest.raises(InvalidArgument) as err:
            token_checks.check_role(bad)
        assert err.value.reason == "INVALID_ROLE" and err.value.field == "role"


def test_experiment_scope_keeps_ids_as_stored_and_prefixes() -> None:
    kept = token_checks.experiment_scope(["007", "team-a/*", "7", "12"])
    assert kept == ("7", "team-a/*", "12")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("", "is empty"),
        ("*", "reach everything"),
        ("team*a", "before its end"),
        ("team**", "before its end"),
        ("x" * 501, "at most 500"),
        ("tab\there*", "control character"),
        ("-1", "no experiment id"),
        ("12a", "no experiment id"),
        ("99999999999", "no experiment id"),
    ],
)
def test_invalid_experiment_entries(entry: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        token_checks.experiment_scope([entry])
    assert err.value.reason == "INVALID_SCOPE" and err.value.field == "experiments"
    assert says in err.value.message


def test_model_scope() -> None:
    assert token_checks.model_scope(["fraud", "risk-*", "fraud"]) == ("fraud", "risk-*")
    for entry in ("", "*", "a*b", "m" * 501, "nul\x00"):
        with pytest.raises(InvalidArgument) as err:
            token_checks.model_scope([entry])
        assert err.value.reason == "INVALID_SCOPE" and err.value.field == "models"


def test_scope_entries_are_limited_in_number() -> None:
    token_checks.model_scope([f"m{i}" for i in range(100)])
    with pytest.raises(InvalidArgument, match="101 model scope entries; at most 100"):
        token_checks.model_scope([f"m{i}" for i in range(101)])


def test_expiry() -> None:
    for fine in (0, 1, token_checks.MAX_LIFETIME_S):
        token_checks.check_expiry(fine)
    assert token_checks.MAX_LIFETIME_S >= 10 * 365 * 24 * 3600
    for bad, says in ((-1, "in the past"), (token_checks.MAX_LIFETIME_S + 1, "ten years")):
        with pytest.raises(InvalidArgument) as err:
            token_checks.check_expiry(bad)
        assert err.value.reason == "INVALID_EXPIRATION" and says in err.value.message


def test_a_request_hears_of_every_problem() -> None:
    with pytest.raises(ManyProblems) as err:
        token_checks.check_request("admin", 0, ["x"], ["*"], -5)
    found = [(p.reason, p.field) for p in err.value.problems]
    assert found == [
        ("INVALID_TOKEN_NAME", "name"),
        ("INVALID_ROLE", "role"),
        ("INVALID_SCOPE", "experiments"),
        ("INVALID_SCOPE", "models"),
        ("INVALID_EXPIRATION", "expires_in_seconds"),
    ]


def test_an_admin_token_cannot_be_scoped() -> None:
    for experiments, models, field in ((["1"], [], "experiments"), ([], ["m"], "models")):
        with pytest.raises(InvalidArgument) as err:
            token_checks.check_request("ops", apb.ROLE_ADMIN, experiments, models, 0)
        assert err.value.reason == "INVALID_SCOPE" and err.value.field == field
    checked = token_checks.check_request("ops", apb.ROLE_ADMIN, [], [], 60)
    assert (checked.role, checked.experiments, checked.models) == (Role.ADMIN, (), ())
    scoped = token_checks.check_request("ci", apb.ROLE_READER, ["01", "a*"], ["m"], 0)
    assert (scoped.experiments, scoped.models) == (("1", "a*"), ("m",))


def test_secrets_and_their_hashes() -> None:
    one, two = new_secret(), new_secret()
    assert one.startswith(SECRET_PREFIX) and one != two and len(one) == len(SECRET_PREFIX) + 43
    assert hash_secret(one.encode()) == hash_secret(one.encode()) != hash_secret(two.encode())
    assert len(hash_secret(b"x")) == 64 and one not in hash_secret(one.encode())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("3600s", 3600), ("1D", 86400)],
)
def test_cli_expiry(text: str, seconds: float) -> None:
    assert parse_expiry(text) == seconds


def test_cli_expiry_never_and_nonsense() -> None:
    assert parse_expiry("never") is None and parse_expiry("NEVER") is None
    for bad in ("", "30", "d", "0d", "-1d", "1.5h", "1w", "30 d", "1d2h"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_expiry(bad)


def test_client_expiry_is_whole_seconds_and_never_zero() -> None:
    assert _seconds(None) == 0
    assert _seconds(30) == 30 and _seconds(0.2) == 1
    assert _seconds(dt.timedelta(days=1, milliseconds=1)) == 86401
    # 0 on the wire means never: a time of 0 or less goes as a past one, for the server to refuse.
    assert _seconds(0) == -1 and _seconds(-0.5) == -1 and _seconds(-3) == -3
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            _seconds(bad)


def test_client_roles() -> None:
    assert token_role("Reader") == apb.ROLE_READER and token_role("ADMIN") == apb.ROLE_ADMIN
    assert token_role(apb.ROLE_WRITER) == apb.ROLE_WRITER
    with pytest.raises(ValueError, match="reader, writer or admin"):
        token_role("owner")


def test_a_created_token_hides_its_secret() -> None:
    info = TokenInfo.of(apb.Token(name="ci", role=apb.ROLE_READER, creation_time=1000))
    created = CreatedToken(info, "tlk_secretvalue")
    assert "tlk_secretvalue" not in repr(created) and "ci" in repr(created)
    assert info.created == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert info.expires is None and info.revoked is None and info.role == "reader"
