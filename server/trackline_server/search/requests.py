"""What every search call does with its request before it queries: the filter and order_by
checked against the entity's schema, the page size, and the offset a page token continues at,
each refused as INVALID_ARGUMENT naming the request's field."""

from __future__ import annotations

from collections.abc import Sequence

from .. import limits, page_tokens
from ..errors import InvalidArgument
from .ast import Expr, OrderKey
from .lexer import FilterError
from .parser import parse_filter, parse_order_by
from .schema import EntitySchema


def parse_request(
    filter_text: str, order_by: Sequence[str], schema: EntitySchema
) -> tuple[Expr | None, list[OrderKey]]:
    """The checked filter (None when empty) and order keys; INVALID_FILTER or
    INVALID_ORDER_BY with the parser's message."""
    try:
        expr = parse_filter(filter_text, schema)
    except FilterError as err:
        raise InvalidArgument("INVALID_FILTER", str(err), "filter") from None
    try:
        keys = parse_order_by(order_by, schema)
    except FilterError as err:
        raise InvalidArgument("INVALID_ORDER_BY", str(err), "order_by") from None
    return expr, keys


def rows_per_page(page_size: int) -> int:
    """The rows a page holds for a request's ``page_size``: DEFAULT_SEARCH_PAGE for 0, at
    most MAX_SEARCH_PAGE; a negative size is INVALID_PAGE_SIZE."""
    if page_size < 0:
        raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative", "page_size")
    return min(page_size or limits.DEFAULT_SEARCH_PAGE, limits.MAX_SEARCH_PAGE)


def page_offset(token: str, made_for: str, call: str, query: str) -> int:
    """The row a page starts at: 0 without a token, else the offset ``token`` carries, which
    must have been made for the fingerprint ``made_for`` (``page_tokens.decode`` names
    ``call`` and ``query`` in its refusals)."""
    if not token:
        return 0
    (offset,) = page_tokens.decode(token, made_for, ("o",), call, query)
    if offset < 0:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN", "page_token was not returned by a search", "page_token"
        )
    return offset


def next_page_token(offset: int, more: bool, made_for: str) -> str:
    """The token of the page starting at ``offset``, or "" when there is no ``more``."""
    return page_tokens.encode({"o": offset}, made_for) if more else ""
