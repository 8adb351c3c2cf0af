"""TracklineClient's token methods (TokenService): creating, listing and revoking the
server's access tokens (an admin token's calls), and asking which token the client holds.

Roles are spelled ``"reader"``, ``"writer"``, ``"admin"`` (in any case) or given as ``Role``
values; another name is a ValueError. Times are timezone-aware UTC
datetimes. A secret is returned once, by ``create_token``, and never appears in a repr.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field

from trackline.v1 import auth_pb2 as apb

from ._calls import bind_calls
from ._transport import Metadata, Transport, UnaryCall

# The reads. RevokeToken is not retried: it acts on a name, which an admin may give a new
# token between two attempts, and a repeat would revoke that one. CreateToken carries no
# request id: a repeat would be ALREADY_EXISTS, and the first attempt's secret lost.
TOKEN_IDEMPOTENT = frozenset({"ListTokens", "WhoAmI"})
_ROLES = {"reader": apb.ROLE_READER, "writer": apb.ROLE_WRITER, "admin": apb.ROLE_ADMIN}
_LABELS = {value: label for label, value in _ROLES.items()}


class TokenCalls:
    """Every TokenService method as a ``UnaryCall`` through one transport (idempotent when in
    ``TOKEN_IDEMPOTENT``)."""

    CreateToken: UnaryCall[apb.CreateTokenRequest, apb.CreateTokenResponse]
    ListTokens: UnaryCall[apb.ListTokensRequest, apb.ListTokensResponse]
    RevokeToken: UnaryCall[apb.RevokeTokenRequest, apb.RevokeTokenResponse]
    WhoAmI: UnaryCall[apb.WhoAmIRequest, apb.WhoAmIResponse]

    def __init__(self, transport: Transport) -> None:
        bind_calls(self, transport, apb, "TokenService", "tokens", TOKEN_IDEMPOTENT)


@dataclass(frozen=True)
class TokenInfo:
    """A token as the server lists it, without its secret. ``role`` is "reader", "writer" or
    "admin"; empty ``experiments`` (ids, or name prefixes ending in '*') and ``models``
    (names, or prefixes) reach everything. ``expires`` is None for a token that never
    expires, ``revoked`` None for one not revoked; ``created_by`` is the name of the token
    that created it ("admin" for the server's --auth-token). ``whoami`` of a token the store
    does not hold (an --auth-token, or a server without tokens) has ``created`` at the epoch."""

    name: str
    role: str
    experiments: tuple[str, ...]
    models: tuple[str, ...]
    created: dt.datetime
    expires: dt.datetime | None
    revoked: dt.datetime | None
    created_by: str

    @classmethod
    def of(cls, token: apb.Token) -> TokenInfo:
        return cls(
            name=token.name,
            role=_LABELS.get(token.role, f"unknown({token.role})"),
            experiments=tuple(token.experiments),
            models=tuple(token.models),
            created=_time(token.creation_time) or _EPOCH,
            expires=_time(token.expiration_time),
            revoked=_time(token.revocation_time),
            created_by=token.created_by,
        )


@dataclass(frozen=True)
class CreatedToken:
    """A token just created and its secret, which the server shows this once: send it as the
    client's ``token`` (or ``TRACKLINE_TOKEN``). Its repr leaves the secret out, so that a log
    or a traceback showing the object does not leak it."""

    token: TokenInfo
    secret: str = field(repr=False)


class TokenMethods:
    """The token methods of ``TracklineClient``, over its transport; each takes keyword-only
    ``timeout`` and ``metadata`` as every client method does."""

    transport: Transport

    @functools.cached_property
    def token_calls(self) -> TokenCalls:
        """Every TokenService method through the client's transport."""
        return TokenCalls(self.transport)

    def create_token(
        self,
        name: str,
        role: str | int,
        *,
        experiments: tuple[str, ...] | list[str] = (),
        models: tuple[str, ...] | list[str] = (),
        expires_in: float | dt.timedelta | None = None,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> CreatedToken:
        """Creates a token named ``name`` (letters, digits, '-', '_', '.', '@'; at most 64)
        with ``role``, reaching only ``experiments`` and ``models`` when given (an admin token
        cannot be scoped); it expires ``expires_in`` (seconds, or a timedelta; up to ten
        years, rounded up to a whole second) from now, or never with None. AlreadyExists
        (TOKEN_ALREADY_EXISTS) when a token that is not revoked has the name. Not retried."""
        req = apb.CreateTokenRequest(
            name=name,
            role=token_role(role),
            experiments=list(experiments),
            models=list(models),
            expires_in_seconds=_seconds(expires_in),
        )
        resp = self.token_calls.CreateToken(req, timeout=timeout, metadata=metadata)
        return CreatedToken(TokenInfo.of(resp.token), resp.secret)

    def list_tokens(
        self,
        include_revoked: bool = False,
        *,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> list[TokenInfo]:
        """Every token by name (those revoked too with ``include_revoked``), fetched page by
        page; never their secrets."""
        req = apb.ListTokensRequest(include_revoked=include_revoked, page_size=page_size)
        pages = self.token_calls.ListTokens.pages(req, "tokens", timeout=timeout, metadata=metadata)
        return [TokenInfo.of(t) for t in pages]

    def revoke_token(
        self, name: str, *, timeout: float | None = None, metadata: Metadata = ()
    ) -> TokenInfo:
        """Revokes the token named ``name``: calls with it are refused from now on (within two
        seconds on other replicas). A token revoked already is returned unchanged; NotFound
        (TOKEN_NOT_FOUND) when no token has the name. Not retried."""
        req = apb.RevokeTokenRequest(name=name)
        resp = self.token_calls.RevokeToken(req, timeout=timeout, metadata=metadata)
        return TokenInfo.of(resp.token)

    def whoami(self, *, timeout: float | None = None, metadata: Metadata = ()) -> TokenInfo:
        """The token this client calls with: its name, role and scope. On a server without
        tokens, an unnamed admin."""
        resp = self.token_calls.WhoAmI(apb.WhoAmIRequest(), timeout=timeout, metadata=metadata)
        return TokenInfo.of(resp.token)


def token_role(role: str | int) -> apb.Role:
    """The Role for "reader", "writer" or "admin" (any case); a value is passed as it is (the
    server refuses one that is no role: INVALID_ROLE). ValueError for another name."""
    if isinstance(role, int):
        return role  # type: ignore[return-value]  # a Role value
    found = _ROLES.get(role.lower()) if isinstance(role, str) else None
    if found is None:
        raise ValueError(f"role must be reader, writer or admin, not {role!r:.80}")
    return found


_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)


def _time(ms: int) -> dt.datetime | None:
    """The UTC time of a millisecond timestamp; None for 0 (never, or not yet)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms else None


def _seconds(expires_in: float | dt.timedelta | None) -> int:
    """``expires_in`` as the request's whole seconds (0: never). A time of 0 or less is sent
    as it is (the server refuses it: INVALID_EXPIRATION), never as 0, which would mean never."""
    if expires_in is None:
        return 0
    seconds = (
        expires_in.total_seconds() if isinstance(expires_in, dt.timedelta) else float(expires_in)
    )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"expires_in must be a finite number of seconds, not {expires_in!r}")
    return math.ceil(seconds) if seconds > 0 else min(math.floor(seconds), -1)
