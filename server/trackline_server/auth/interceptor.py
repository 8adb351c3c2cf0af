"""Bearer-token authentication: an interceptor in front of every service but health checks."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

import grpc

from ..errors import Unauthenticated
from ..transport.grpc_server import failing

# Load balancers and orchestrators probe health without credentials.
_OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Admits a call whose one ``authorization`` metadata entry is ``Bearer <token>`` for one
    of ``tokens`` (several, so a token can be rotated without downtime); any other call,
    including one with several ``authorization`` entries, ends with UNAUTHENTICATED before
    reaching a servicer."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens or not all(tokens):
            raise ValueError("at least one non-empty token is required")
        self._tokens = [t.encode() for t in tokens]

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method in _OPEN_METHODS:
            return handler
        error = self._check(details.invocation_metadata or ())
        if error is None:
            return handler
        return failing(handler, error)

    def _check(self, metadata: Sequence[tuple[str, str | bytes]]) -> Unauthenticated | None:
        values = [v for k, v in metadata if k == "authorization"]
        if not values:
            return Unauthenticated(
                "MISSING_TOKEN",
                "this server requires a token: send 'authorization: Bearer <token>'"
                " (TRACKLINE_TOKEN in the clients)",
            )
        if len(values) > 1:  # proxies disagree on which one counts: trust none
            return Unauthenticated(
                "MALFORMED_TOKEN",
                f"send exactly one authorization header (this call has {len(values)})",
            )
        raw = values[0]
        value = raw.encode() if isinstance(raw, str) else raw
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return Unauthenticated(
                "MALFORMED_TOKEN", "the authorization header must be 'Bearer <token>'"
            )
        # Compare against every token so timing does not reveal which one nearly matched.
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(token.strip(), known)
        if not matched:
            return Unauthenticated("INVALID_TOKEN", "the token is not valid for this server")
        return None
