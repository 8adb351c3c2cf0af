"""Who a call is, from its ``authorization`` metadata: a bootstrap token given with
``--auth-token``, a token from the store (``tokens.py``), or nobody on a server without
tokens.

A server has tokens when it was started with ``--auth-token`` or a token was ever created in
its store; then every call needs one. Ever created, not "valid now": a server whose tokens
have all expired or been revoked must not fall open. Whether the store holds one is read
again every ``TTL_S``, as is each token once read, so a token created or revoked through
another replica takes effect here within that time; in this process ``invalidate`` (called by
TokenService after each change) makes it immediate.

Secrets are compared by their SHA-256 (the store has nothing else): the lookup's timing
depends on the hash, which reveals nothing about how near a guess came; the bootstrap tokens
are compared with ``hmac.compare_digest``, all of them every time. A secret never appears in
an error or the log; the messages name the token by its name, once it is known.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Sequence

from ..database import Database
from ..errors import Unauthenticated
from . import tokens
from .principal import ANONYMOUS, Principal, Scope
from .roles import Role

TTL_S = 2.0
BOOTSTRAP_NAME = "admin"
_KEPT = 10_000  # tokens kept (valid or not): a flood of wrong tokens cannot grow memory


class Authenticator:
    def __init__(self, db: Database, bootstrap: Sequence[str] = ()) -> None:
        if not all(bootstrap):
            raise ValueError("a bootstrap token must not be empty")
        self._db = db
        self._bootstrap = [t.encode() for t in bootstrap]
        self._kept: OrderedDict[str, tuple[tokens.StoredToken | None, float]] = OrderedDict()
        self._store_has_tokens: tuple[bool, float] | None = None

    def invalidate(self) -> None:
        """Forgets what was read from the store: the next call reads it again."""
        self._kept.clear()
        self._store_has_tokens = None

    async def principal(self, metadata: Sequence[tuple[str, str | bytes]]) -> Principal:
        """The principal of a call with ``metadata``; raises Unauthenticated (MISSING_TOKEN,
        MALFORMED_TOKEN, INVALID_TOKEN, TOKEN_EXPIRED, TOKEN_REVOKED)."""
        values = [v for k, v in metadata if k == "authorization"]
        if not values:
            if await self.required():
                raise Unauthenticated(
                    "MISSING_TOKEN",
                    "this server requires a token: send 'authorization: Bearer <token>'"
                    " (TRACKLINE_TOKEN in the clients)",
                )
            return ANONYMOUS
        if not await self.required():
            return ANONYMOUS  # a server without tokens admits everyone, token or not
        if len(values) > 1:  # proxies disagree on which one counts: trust none
            raise Unauthenticated(
                "MALFORMED_TOKEN",
                f"send exactly one authorization header (this call has {len(values)})",
            )
        raw = values[0]
        value = raw.encode() if isinstance(raw, str) else raw
        scheme, _, secret = value.partition(b" ")
        secret = secret.strip()
        if scheme.lower() != b"bearer" or not secret:
            raise Unauthenticated(
                "MALFORMED_TOKEN", "the authorization header must be 'Bearer <token>'"
            )
        key = tokens.hash_secret(secret)
        matched = False
        for known in self._bootstrap:  # every one, so timing does not tell which nearly matched
            matched |= hmac.compare_digest(secret, known)
        if matched:
            return Principal(BOOTSTRAP_NAME, Role.ADMIN, key=key)
        stored = await self._stored(key)
        if stored is None:
            raise Unauthenticated("INVALID_TOKEN", "the token is not valid for this server")
        if stored.revocation_time:
            raise _revoked(stored.name)
        if stored.expiration_time and stored.expiration_time <= time.time() * 1000:
            raise _expired(stored.name)
        return Principal(
            stored.name,
            stored.role,
            Scope.of_experiments(stored.experiments),
            Scope.of_models(stored.models),
            key=key,
            expiration_time=stored.expiration_time,
        )

    async def recheck(self, principal: Principal) -> None:
        """Raises Unauthenticated when ``principal``'s stored token was revoked or has expired
        since it was admitted (the bootstrap and anonymous principals stay valid)."""
        if principal.key is None or principal.name == BOOTSTRAP_NAME:
            return
        if principal.expiration_time and principal.expiration_time <= time.time() * 1000:
            raise _expired(principal.name)
        stored = await self._stored(principal.key)
        if stored is None or stored.revocation_time:
            raise _revoked(principal.name)

    async def required(self) -> bool:
        """Whether calls need a token: bootstrap tokens, or any token in the store."""
        if self._bootstrap:
            return True
        now = time.monotonic()
        known = self._store_has_tokens
        if known is None or now - known[1] >= TTL_S:
            async with self._db.snapshot() as snap:
                has = await tokens.any_created(snap)
            self._store_has_tokens = known = (has, now)
        return known[0]

    async def _stored(self, key: str) -> tokens.StoredToken | None:
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and now - kept[1] < TTL_S:
            return kept[0]
        async with self._db.snapshot() as snap:
            stored = await tokens.find_by_hash(snap, key)
        self._kept[key] = (stored, now)
        self._kept.move_to_end(key)
        if len(self._kept) > _KEPT:
            self._kept.popitem(last=False)
        return stored


def _revoked(name: str) -> Unauthenticated:
    return Unauthenticated(
        "TOKEN_REVOKED", f"the token {name!r} has been revoked; ask for a new one"
    )


def _expired(name: str) -> Unauthenticated:
    return Unauthenticated("TOKEN_EXPIRED", f"the token {name!r} has expired; ask for a new one")
