"""Authentication and roles in front of every service: a call the table (``permissions.py``)
does not admit for its principal ends before any service sees it, before its request is
even parsed. The principal of an admitted call is left in ``principal.current`` for the
edge, which checks the request against a scoped token's scope (``scopes.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import grpc

from ..errors import PermissionDenied, from_exception
from ..transport.grpc_server import failing
from . import principal as principals
from .authenticator import Authenticator
from .permissions import Rule
from .roles import Permission, Role


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator, rules: Mapping[str, Rule]) -> None:
        self._authenticator = authenticator
        self._rules = rules

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        rule = self._rules.get(details.method)
        if rule is not None and rule.permission is Permission.OPEN:
            return handler
        try:
            who = await self._authenticator.principal(details.invocation_metadata or ())
        except Exception as exc:  # a token refused, or the store unreachable to look it up
            return failing(handler, from_exception(exc, "authentication"))
        if rule is None:  # the table's test keeps this from happening to a served RPC
            return failing(
                handler,
                PermissionDenied("ROLE_NOT_ALLOWED", f"{details.method} is not open to any token"),
            )
        if not who.may(rule.permission):
            needed = Role.needed_for(rule.permission).label
            return failing(
                handler,
                PermissionDenied(
                    "ROLE_NOT_ALLOWED",
                    f"{details.method.rsplit('/', 1)[-1]} needs a {needed} token; the token"
                    f" {who.name!r} is a {who.role.label}",
                ),
            )
        principals.current.set(who)
        return handler
