"""TokenService: tokens created, listed and revoked at run time, and WhoAmI, written once for
every transport (``transport/grpc_server.py`` serves it).

CreateToken and RevokeToken open their own write transaction (``@own_transactions``) so that
``on_change`` runs after it commits: the authenticator drops the tokens it cached then, and a
call it admits next reads the store as committed, never as it was before the change.
"""

from __future__ import annotations

from collections.abc import Callable

from trackline.v1 import auth_pb2 as apb

from ..database import Database
from ..transport import Call, own_transactions, reads
from . import token_checks, tokens
from .principal import Principal


class TokenService:
    def __init__(self, db: Database, on_change: Callable[[], None]) -> None:
        self.db = db
        self.on_change = on_change

    @own_transactions
    async def create_token(
        self, request: apb.CreateTokenRequest, call: Call
    ) -> apb.CreateTokenResponse:
        checked = token_checks.check_request(
            request.name, request.role, list(request.experiments), list(request.models),
            request.expires_in_seconds,
        )  # fmt: skip
        async with self.db.write() as conn:
            token, secret = await tokens.create(conn, checked, call.principal.author)
        self.on_change()
        return apb.CreateTokenResponse(token=token.message(), secret=secret)

    @reads
    async def list_tokens(
        self, request: apb.ListTokensRequest, call: Call
    ) -> apb.ListTokensResponse:
        found, next_page = await tokens.list_page(
            call.reader, request.include_revoked, request.page_size, request.page_token
        )
        return apb.ListTokensResponse(
            tokens=[t.message() for t in found], next_page_token=next_page
        )

    @own_transactions
    async def revoke_token(
        self, request: apb.RevokeTokenRequest, call: Call
    ) -> apb.RevokeTokenResponse:
        async with self.db.write() as conn:
            token = await tokens.revoke(conn, request.name)
        self.on_change()
        return apb.RevokeTokenResponse(token=token.message())

    @reads
    async def who_am_i(self, request: apb.WhoAmIRequest, call: Call) -> apb.WhoAmIResponse:
        """The stored token of the call's principal (with when and by whom it was made); a
        bootstrap or anonymous principal, which the store does not hold, as the principal
        itself describes it."""
        principal = call.principal
        stored = None
        if principal.key is not None:
            stored = await tokens.find_by_hash(call.reader, principal.key)
        token = stored.message() if stored is not None else _described(principal)
        return apb.WhoAmIResponse(token=token, authenticated=principal.authenticated)


def _described(principal: Principal) -> apb.Token:
    return apb.Token(
        name=principal.name,
        role=int(principal.role),  # type: ignore[arg-type]  # a Role value
        experiments=principal.experiments.entries(),
        models=principal.models.entries(),
        expiration_time=principal.expiration_time,
    )
