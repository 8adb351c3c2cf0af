"""Access tokens in the store (``models.access_tokens``): made, listed, revoked, and found by
the hash of a secret, which is all the store keeps of it.

A secret is "tlk_" and 32 random bytes in urlsafe base64; its SHA-256 (hex) is the row's
``secret_hash`` and the principal's ``key``. A fast hash is enough: the secret has 256 bits of
entropy, so no dictionary reaches it, and each call's lookup costs microseconds.

A name is unique among the tokens that are not revoked: a revoked token's row stays (listed
with ``include_revoked``, its name recorded on what it wrote) and its name may be given again.
Functions take a reader or a connection inside an open transaction and never commit.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import auth_pb2 as apb

from .. import page_tokens, sql
from ..clock import now_ms
from ..errors import AlreadyExists, InvalidArgument, NotFound, shown
from ..models import access_tokens
from ..validation import findable
from .roles import Role
from .token_checks import TokenRequest

SECRET_PREFIX = "tlk_"
DEFAULT_PAGE = 100
MAX_PAGE = 1000

_T = access_tokens.c
_COLUMNS = (
    _T.name,
    _T.role,
    _T.experiments,
    _T.models,
    _T.creation_time,
    _T.expiration_time,
    _T.revocation_time,
    _T.created_by,
)
_BY_HASH = sql.Query(lambda _: select(*_COLUMNS).where(_T.secret_hash == bindparam("secret_hash")))
_ANY = sql.Query(lambda _: select(_T.token_id).limit(1))
_ACTIVE_BY_NAME = sql.Query(
    lambda _: select(_T.token_id).where(_T.name == bindparam("name"), _T.revocation_time == 0)
)
# The latest token of a name (the one a revoke of a revoked name returns).
_LATEST_BY_NAME = sql.Query(
    lambda _: (
        select(*_COLUMNS).where(_T.name == bindparam("name")).order_by(_T.token_id.desc()).limit(1)
    )
)


@dataclass(frozen=True)
class StoredToken:
    """A token's row: its scope entries as given (``token_checks``), times in milliseconds
    (``expiration_time`` 0: never; ``revocation_time`` 0: not revoked), and the principal
    that created it."""

    name: str
    role: Role
    experiments: tuple[str, ...]
    models: tuple[str, ...]
    creation_time: int
    expiration_time: int
    revocation_time: int
    created_by: str

    @classmethod
    def of(cls, row: Any) -> StoredToken:
        """From a row of ``_COLUMNS``."""
        name, role, experiments, models, created, expires, revoked, created_by = row
        return cls(
            name, Role(role), tuple(json.loads(experiments)), tuple(json.loads(models)),
            int(created), int(expires), int(revoked), created_by,
        )  # fmt: skip

    def message(self) -> apb.Token:
        """As the API's Token (never with its secret, which the store does not have)."""
        return apb.Token(
            name=self.name,
            role=int(self.role),  # type: ignore[arg-type]  # a Role value
            experiments=self.experiments,
            models=self.models,
            creation_time=self.creation_time,
            expiration_time=self.expiration_time,
            revocation_time=self.revocation_time,
            created_by=self.created_by,
        )


def hash_secret(secret: bytes) -> str:
    """The SHA-256 (hex) of a secret as the call carried it: what the store keeps."""
    return hashlib.sha256(secret).hexdigest()


def new_secret() -> str:
    """A fresh secret: the prefix (which secret scanners can match) and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def find_by_hash(reader: sql.Reader, secret_hash: str) -> StoredToken | None:
    """The token whose secret hashes to ``secret_hash``, revoked or expired ones included
    (the caller tells those apart); None when no token has it."""
    row = await sql.first(reader, _BY_HASH, {"secret_hash": secret_hash})
    return None if row is None else StoredToken.of(row)


async def any_created(reader: sql.Reader) -> bool:
    """Whether a token was ever created in the store (revoked and expired ones count: a
    server whose tokens all ended must not fall open)."""
    return await sql.first(reader, _ANY) is not None


async def create(
    conn: AsyncConnection, request: TokenRequest, created_by: str
) -> tuple[StoredToken, str]:
    """Stores a new token for the checked ``request`` and returns it with its secret;
    ALREADY_EXISTS TOKEN_ALREADY_EXISTS when a token that is not revoked has the name."""
    if await sql.first(conn, _ACTIVE_BY_NAME, {"name": request.name}) is not None:
        raise _taken(request.name)
    created = now_ms()
    token = StoredToken(
        request.name, request.role, request.experiments, request.models, created,
        created + request.expires_in_s * 1000 if request.expires_in_s else 0, 0, created_by,
    )  # fmt: skip
    secret = new_secret()
    try:
        await conn.execute(
            insert(access_tokens).values(
                name=token.name,
                secret_hash=hash_secret(secret.encode()),
                role=int(token.role),
                experiments=json.dumps(token.experiments),
                models=json.dumps(token.models),
                creation_time=token.creation_time,
                expiration_time=token.expiration_time,
                created_by=created_by,
            )  # fmt: skip
        )
    except IntegrityError:  # a concurrent call took the name since the check above
        raise _taken(request.name) from None
    return token, secret


async def revoke(conn: AsyncConnection, name: str) -> StoredToken:
    """Revokes the token of ``name`` that is not revoked and returns it; when every token of
    that name is revoked already, the latest unchanged. NOT_FOUND TOKEN_NOT_FOUND."""
    revoked = None
    if findable(name):
        result = await conn.execute(
            update(access_tokens)
            .where(_T.name == name, _T.revocation_time == 0)
            .values(revocation_time=now_ms())
            .returning(*_COLUMNS)
        )
        revoked = result.first() or await sql.first(conn, _LATEST_BY_NAME, {"name": name})
    if revoked is None:
        raise NotFound("TOKEN_NOT_FOUND", f"no token is named {shown(name)}", "name")
    return StoredToken.of(revoked)


async def list_page(
    reader: sql.Reader, include_revoked: bool, page_size: int, page_token: str
) -> tuple[list[StoredToken], str]:
    """A page of tokens by name (by creation among revoked ones of one name) and the next
    page's token ("" after the last). The token holds the last row's id: a token created or
    revoked between two pages moves no other across the page boundary."""
    if page_size < 0:
        raise InvalidArgument(
            "INVALID_PAGE_SIZE", f"page_size must be 0 or more, not {page_size}", "page_size"
        )
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    made_for = page_tokens.fingerprint("ListTokens", include_revoked)
    stmt = select(_T.token_id, *_COLUMNS).limit(size + 1)
    if page_token:
        (after,) = page_tokens.decode(page_token, made_for, ("t",), "ListTokens", "include_revoked")
        last_name = select(_T.name).where(_T.token_id == after).scalar_subquery()
        stmt = stmt.where(
            or_(
                sql.by_code_point(_T.name, reader.dialect.name) > last_name,
                (_T.name == last_name) & (_T.token_id > after),
            )
        )
    if not include_revoked:
        stmt = stmt.where(_T.revocation_time == 0)
    stmt = stmt.order_by(sql.by_code_point(_T.name, reader.dialect.name), _T.token_id)
    found = await sql.rows(reader, stmt)
    token = page_tokens.encode({"t": found[size - 1][0]}, made_for) if len(found) > size else ""
    return [StoredToken.of(row[1:]) for row in found[:size]], token


def _taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        "TOKEN_ALREADY_EXISTS",
        f"a token named {shown(name)} exists: revoke it first, or pick another name",
        "name",
    )
