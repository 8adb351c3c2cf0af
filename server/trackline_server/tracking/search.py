"""SearchRuns and SearchExperiments: filter, order, page, then load the page's rows in bulk.

A page holds at most ``page_size`` rows and, as estimated from the stored sizes, at most
limits.MAX_SEARCH_REPLY_BYTES (runs are sized as they load, ``runs.fill``; experiments
before); its token continues right after its last row. On
PostgreSQL each statement of a search is cut off after limits.SEARCH_STATEMENT_TIMEOUT_S.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    and_,
    bindparam,
    false,
    func,
    select,
    union_all,
)
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from .. import limits, page_tokens
from ..auth.principal import EVERYTHING, Scope
from ..errors import InvalidArgument, ResourceExhausted, shown
from ..models import experiment_tags, experiments, runs
from ..search import (
    apply_order,
    filter_clause,
    next_page_token,
    page_offset,
    parse_request,
    rows_per_page,
)
from ..sql import Query, Reader, among, octets, rows
from . import runs as run_queries
from .experiments import ExperimentRow
from .experiments import load as load_experiments
from .search_schema import EXPERIMENT_ID, EXPERIMENTS, RUNS

# Upper bounds of the protobuf framing around an experiment's own fields and one tag (runs'
# are in runs.py, where a page of runs is sized as it loads).
_EXPERIMENT_OVERHEAD = 128
_ENTRY_OVERHEAD = run_queries.ENTRY_OVERHEAD
# What a page of a single row may hold: the send limit less room for the token and framing.
_MAX_SINGLE_BYTES = limits.MAX_MESSAGE_BYTES - 1024 * 1024
_QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cut off by its timeout
# What a refused page token names: the call that makes tokens, the parts a token is bound to.
_CALL, _QUERY = "a search", "filter, order_by, experiments and view type"


async def search_runs(
    reader: Reader,
    experiment_ids: Sequence[str],
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    page_token: str,
    view_type: int,
    page: RepeatedCompositeFieldContainer[pb.Run],
    read_mask: Sequence[str] = (),
    scope: Scope = EVERYTHING,
) -> str:
    """Adds one page of matching runs of experiments in ``scope`` to ``page`` (a reply's
    ``runs``), with the fields ``read_mask`` names (every field when it is empty), and returns
    the token of the next page ("" at the end)."""
    fields = _run_fields(read_mask)
    exp_ids = _experiment_ids(experiment_ids)
    expr, keys = parse_request(filter_text, order_by, RUNS)
    size = rows_per_page(page_size)
    fingerprint = page_tokens.fingerprint("runs", exp_ids, filter_text, order_by, view_type)
    offset = page_offset(page_token, fingerprint, _CALL, _QUERY)

    where: list[ColumnElement[bool]] = [_stage(runs.c.lifecycle_stage, view_type)]
    if experiment_ids:
        where.append(runs.c.experiment_id.in_(exp_ids) if exp_ids else false())
    in_scope = scope.clause(experiments.c.name, experiments.c.experiment_id)
    if in_scope is not None:
        where.append(runs.c.experiment_id.in_(select(experiments.c.experiment_id).where(in_scope)))
    if expr is not None:
        where.append(filter_clause(RUNS, expr, reader.dialect.name))
    # The runs' own columns come with the match: no second query for them.
    query = select(*run_queries.COLUMNS).where(and_(*where))
    query = apply_order(RUNS, query, keys).offset(offset).limit(size + 1)
    async with _time_limit(reader):
        matched = await rows(reader, query, aside=True)
        budget = run_queries.Budget(limits.MAX_SEARCH_REPLY_BYTES, _MAX_SINGLE_BYTES, _too_large)
        found = await run_queries.fill(reader, matched[:size], page.add, budget, fields)
        del page[len(found) :]
    return next_page_token(offset + len(found), len(found) < len(matched), fingerprint)


_RUN_FIELDS = frozenset(f.name for f in pb.Run.DESCRIPTOR.fields)


def _run_fields(paths: Sequence[str]) -> frozenset[str] | None:
    """The Run fields a read mask names; None for all of them (no paths, or "*")."""
    if not paths or "*" in paths:
        return None
    unknown = [p for p in paths if p not in _RUN_FIELDS]
    if unknown:
        raise InvalidArgument(
            "INVALID_READ_MASK",
            f"read_mask names {shown(unknown[0])}, which is not a field of Run; use some of"
            f' {", ".join(sorted(_RUN_FIELDS))}, or "*" for all',
            "read_mask",
        )
    return frozenset(paths)


async def search_experiments(
    reader: Reader,
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    page_token: str,
    view_type: int,
    scope: Scope = EVERYTHING,
) -> tuple[list[ExperimentRow], str]:
    """One page of matching experiments in ``scope`` and the token of the next page ("" at
    the end)."""
    expr, keys = parse_request(filter_text, order_by, EXPERIMENTS)
    size = rows_per_page(page_size)
    fingerprint = page_tokens.fingerprint("experiments", [], filter_text, order_by, view_type)
    offset = page_offset(page_token, fingerprint, _CALL, _QUERY)

    where = [_stage(experiments.c.lifecycle_stage, view_type)]
    in_scope = scope.clause(experiments.c.name, experiments.c.experiment_id)
    if in_scope is not None:
        where.append(in_scope)
    if expr is not None:
        where.append(filter_clause(EXPERIMENTS, expr, reader.dialect.name))
    query = select(experiments.c.experiment_id).where(and_(*where))
    query = apply_order(EXPERIMENTS, query, keys).offset(offset).limit(size + 1)
    async with _time_limit(reader):
        ids: list[int] = [row[0] for row in await rows(reader, query, aside=True)]
        found = await _fill_experiments(reader, ids[:size])
    return found, next_page_token(offset + len(found), len(found) < len(ids), fingerprint)


@asynccontextmanager
async def _time_limit(reader: Reader) -> AsyncIterator[None]:
    """On PostgreSQL: the statement timeout for the rest of the transaction, and no JIT (with
    hundreds of comparisons JIT compilation took 16 of a query's 17 s); a statement cut off
    by the timeout becomes QUERY_TOO_EXPENSIVE."""
    if reader.dialect.name != "postgresql":
        yield
        return
    await rows(reader, _TIME_LIMIT, {"timeout": str(limits.SEARCH_STATEMENT_TIMEOUT_S * 1000)})
    try:
        yield
    except Exception as exc:
        # asyncpg's error on a snapshot; SQLAlchemy's, with asyncpg's as ``orig``, otherwise.
        state = getattr(exc, "sqlstate", None) or getattr(
            getattr(exc, "orig", None), "sqlstate", None
        )
        if state != _QUERY_CANCELED:
            raise
        raise ResourceExhausted(
            "QUERY_TOO_EXPENSIVE",
            f"the search took longer than {limits.SEARCH_STATEMENT_TIMEOUT_S} s; narrow the filter",
        ) from None


async def _fill_experiments(reader: Reader, ids: list[int]) -> list[ExperimentRow]:
    """The experiments of the longest prefix of ``ids`` within the reply budget (at least
    one), sized by one statement before loading (runs are sized as they load: runs.fill)."""
    estimates: dict[int, int] = dict.fromkeys(ids, 0)
    if ids:
        for row_id, size in await rows(reader, _EXPERIMENT_SIZES, {"ids": ids}):
            estimates[row_id] += int(size or 0)
    take: list[int] = []
    used = 0
    for row_id in ids:
        size = estimates[row_id]
        if take and used + size > limits.MAX_SEARCH_REPLY_BYTES:
            break
        if size > _MAX_SINGLE_BYTES:
            raise _too_large(str(row_id), size, "experiment")
        take.append(row_id)
        used += size
    return await load_experiments(reader, take)


def _too_large(row_id: str, size: int, noun: str = "run") -> ResourceExhausted:
    return ResourceExhausted(
        "REPLY_TOO_LARGE",
        f"{noun} {shown(row_id)} holds about {size >> 20} MiB of data, more than one reply"
        f" can carry ({limits.MAX_MESSAGE_BYTES >> 20} MiB); delete some of its tags or params",
    )


def _experiment_sizes(d: str) -> CompoundSelect[Any]:
    e, t = experiments.c, experiment_tags.c
    own = _EXPERIMENT_OVERHEAD + octets(e.name, d) + octets(e.artifact_location, d)
    total = func.sum(octets(t.key, d) + octets(t.value, d) + _ENTRY_OVERHEAD)
    return union_all(
        select(e.experiment_id, own).where(among(e.experiment_id, "ids", d)),
        select(t.experiment_id, total)
        .where(among(t.experiment_id, "ids", d))
        .group_by(t.experiment_id),
    )


# (id, estimated bytes) rows of some experiments, to size a page before loading it.
_EXPERIMENT_SIZES = Query(_experiment_sizes)
_TIME_LIMIT = Query(
    lambda _: select(
        func.set_config("statement_timeout", bindparam("timeout"), True),
        func.set_config("jit", "off", True),
    )
)


def _experiment_ids(raw_ids: Sequence[str]) -> list[int]:
    """The distinct ids named, sorted; ids too large for any experiment to have are left out
    (they match nothing, as an unknown id does)."""
    if len(raw_ids) > limits.MAX_SEARCH_EXPERIMENT_IDS:
        raise InvalidArgument(
            "TOO_MANY_EXPERIMENTS",
            f"{len(raw_ids)} experiment ids; at most {limits.MAX_SEARCH_EXPERIMENT_IDS}",
            "experiment_ids",
        )
    ids: set[int] = set()
    for i, raw in enumerate(raw_ids):
        if not (raw.isascii() and raw.isdigit()):
            raise InvalidArgument(
                "INVALID_EXPERIMENT_ID",
                f"experiment id {shown(raw)} is not an experiment id",
                f"experiment_ids[{i}]",
            )
        stored = EXPERIMENT_ID.stored(raw.lstrip("0") or "0")
        if stored is not None:
            ids.add(stored)
    return sorted(ids)


def _stage(column: ColumnElement[int], view_type: int) -> ColumnElement[bool]:
    """Which lifecycle stages a search of ``view_type`` (a ViewType) sees."""
    active, deleted = int(pb.LIFECYCLE_STAGE_ACTIVE), int(pb.LIFECYCLE_STAGE_DELETED)
    if view_type in (tpb.VIEW_TYPE_UNSPECIFIED, tpb.VIEW_TYPE_ACTIVE_ONLY):
        return column == active
    if view_type == tpb.VIEW_TYPE_DELETED_ONLY:
        return column == deleted
    if view_type == tpb.VIEW_TYPE_ALL:
        return column.in_([active, deleted])
    raise InvalidArgument("INVALID_VIEW_TYPE", f"unknown view type {view_type}", "view_type")
