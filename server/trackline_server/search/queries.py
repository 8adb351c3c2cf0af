"""SearchRuns and SearchExperiments: filter, order, page, then load the page's rows in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits, page_tokens
from ..errors import InvalidArgument
from ..store import ACTIVE, DELETED, ExperimentRow, RunRow, load_experiments, load_runs
from . import sql
from .ast import Expr, Identifier, OrderKey
from .parser import FilterError, parse_filter, parse_order_by

# ViewType values of the API.
ACTIVE_ONLY = 1
DELETED_ONLY = 2
ALL = 3

_RUN_DEFAULT_ORDER = [OrderKey(Identifier("attribute", "start_time", 0), descending=True)]
_EXPERIMENT_DEFAULT_ORDER = [OrderKey(Identifier("attribute", "creation_time", 0), descending=True)]


async def search_runs(
    conn: AsyncConnection,
    experiment_ids: Sequence[str],
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    page_token: str,
    view_type: int,
) -> tuple[list[RunRow], str]:
    """One page of matching runs and the token of the next page ("" at the end)."""
    exp_ids = []
    for i, raw in enumerate(experiment_ids):
        if not raw.isdigit():
            raise InvalidArgument(
                "INVALID_EXPERIMENT_ID",
                f"experiment id {raw!r} is not an experiment id",
                f"experiment_ids[{i}]",
            )
        exp_ids.append(int(raw))
    expr, keys = _parse(filter_text, order_by, "run")
    size = _page_size(page_size)
    fingerprint = page_tokens.fingerprint("runs", sorted(exp_ids), filter_text, order_by, view_type)
    offset = _decode_offset(page_token, fingerprint) if page_token else 0

    where: list[ColumnElement[bool]] = [_stage(sql.RUN.table.c.lifecycle_stage, view_type)]
    if exp_ids:
        where.append(sql.RUN.table.c.experiment_id.in_(exp_ids))
    if expr is not None:
        where.append(sql.condition(sql.RUN, expr))
    query = select(sql.RUN.id_column).where(and_(*where))
    query = sql.order(sql.RUN, query, keys, _RUN_DEFAULT_ORDER).offset(offset).limit(size + 1)
    ids = list(await conn.scalars(query))
    token = page_tokens.encode({"o": offset + size}, fingerprint) if len(ids) > size else ""
    return await load_runs(conn, ids[:size]), token


async def search_experiments(
    conn: AsyncConnection,
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    page_token: str,
    view_type: int,
) -> tuple[list[ExperimentRow], str]:
    """One page of matching experiments and the token of the next page ("" at the end)."""
    expr, keys = _parse(filter_text, order_by, "experiment")
    size = _page_size(page_size)
    fingerprint = page_tokens.fingerprint("experiments", [], filter_text, order_by, view_type)
    offset = _decode_offset(page_token, fingerprint) if page_token else 0

    where = [_stage(sql.EXPERIMENT.table.c.lifecycle_stage, view_type)]
    if expr is not None:
        where.append(sql.condition(sql.EXPERIMENT, expr))
    query = select(sql.EXPERIMENT.id_column).where(and_(*where))
    query = sql.order(sql.EXPERIMENT, query, keys, _EXPERIMENT_DEFAULT_ORDER)
    ids = list(await conn.scalars(query.offset(offset).limit(size + 1)))
    token = page_tokens.encode({"o": offset + size}, fingerprint) if len(ids) > size else ""
    return await load_experiments(conn, ids[:size]), token


def _parse(
    filter_text: str, order_by: Sequence[str], entity: Literal["run", "experiment"]
) -> tuple[Expr | None, list[OrderKey]]:
    try:
        expr = parse_filter(filter_text, entity)
    except FilterError as err:
        raise InvalidArgument("INVALID_FILTER", str(err), "filter") from None
    try:
        keys = parse_order_by(order_by, entity)
    except FilterError as err:
        raise InvalidArgument("INVALID_ORDER_BY", str(err), "order_by") from None
    return expr, keys


def _stage(column: ColumnElement[int], view_type: int) -> ColumnElement[bool]:
    if view_type in (0, ACTIVE_ONLY):
        return column == ACTIVE
    if view_type == DELETED_ONLY:
        return column == DELETED
    if view_type == ALL:
        return column.in_([ACTIVE, DELETED])
    raise InvalidArgument("INVALID_VIEW_TYPE", f"unknown view type {view_type}", "view_type")


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative", "page_size")
    return min(page_size or limits.DEFAULT_SEARCH_PAGE, limits.MAX_SEARCH_PAGE)


def _decode_offset(token: str, made_for: str) -> int:
    (offset,) = page_tokens.decode(
        token, made_for, ("o",), "a search", "filter, order_by, experiments and view type"
    )
    if offset < 0:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN", "page_token was not returned by a search", "page_token"
        )
    return offset
