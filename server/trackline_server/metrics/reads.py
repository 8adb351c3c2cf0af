"""Reads of metric series from chunk rows: step-ordered pages (GetMetricHistory) and the
multi-series read of GetMetricHistories. The chart view is in downsample.py, the reading of
chunk rows shared by both in chunk_points.py.

Order of points: (step, timestamp, chunk order, position in chunk), where chunk order is
(min_step, chunk_id). A page token is tied to that order: it holds the step to resume at and
how many points at that step earlier pages returned. Chunks written between two pages may
therefore show up in a later page or shift a page boundary by the points they add.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits, page_tokens
from ..errors import InvalidArgument, ResourceExhausted
from ..models import metric_chunks
from .chunk_points import (
    META,
    ChunkMeta,
    Points,
    SeriesRange,
    TooMany,
    check_range,
    chunk_points,
    collect,
    concat,
    fetch_metas,
    load,
    overlapping,
    sort_points,
    view_points,
)
from .downsample import downsample_series

# GetMetricHistories: at most this many runs and keys, and without max_points at most this many
# points over all series.
MAX_HISTORIES_RUNS = 100
MAX_HISTORIES_KEYS = 100
MAX_HISTORIES_POINTS = 1_000_000
_TOKEN_VERSION = 1

_c = metric_chunks.c


# Page tokens


def _decode_token(token: str, made_for: str) -> tuple[int, int]:
    version, step, skip = page_tokens.decode(
        token, made_for, ("v", "s", "k"), "GetMetricHistory",
        "run_id, key, rank, start_step and end_step",
    )  # fmt: skip
    if version != _TOKEN_VERSION or skip < 0:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN", "page_token was not returned by GetMetricHistory", "page_token"
        )
    return step, skip


def _encode_token(step: int, skip: int, made_for: str) -> str:
    return page_tokens.encode({"v": _TOKEN_VERSION, "s": step, "k": skip}, made_for)


# Paging


async def history_page(
    conn: AsyncConnection,
    run_id: str,
    key: str,
    *,
    rank: int | None,
    start_step: int | None,
    end_step: int | None,
    page_size: int,
    page_token: str,
) -> tuple[Points, str]:
    """One page of the series in [start_step, end_step] (rank None: every rank, merged) and
    the next page's token ("" at the end). Reads only the chunks the page needs. The run is
    not looked up: the caller checks that it exists."""
    check_range(start_step, end_step)
    if page_size < 0:
        raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative", "page_size")
    size = min(page_size or limits.DEFAULT_HISTORY_PAGE, limits.MAX_HISTORY_PAGE)
    fingerprint = page_tokens.fingerprint(run_id, key, rank, start_step, end_step)
    from_step, skip = start_step, 0
    if page_token:
        from_step, skip = _decode_token(page_token, fingerprint)
        if (start_step is not None and from_step < start_step) or (
            end_step is not None and from_step > end_step
        ):
            raise InvalidArgument(
                "INVALID_PAGE_TOKEN", "page_token is outside the step range", "page_token"
            )
    series = SeriesRange(run_id, key, rank, from_step, end_step)

    # Chunks holding from_step always belong to the page; then chunks in order until the page
    # has enough points. The first chunk left out bounds the page: its min_step is to_step.
    picked: list[ChunkMeta] = []
    if from_step is not None:
        picked = await fetch_metas(conn, series.where() + [_c.min_step <= from_step])
    total = sum(m.n for m in picked)
    following: ChunkMeta | None = None
    after: ChunkMeta | None = None
    batch = 1 if total >= size else 256  # only the bounding chunk is still wanted
    while following is None:
        conds = series.where()
        if from_step is not None:
            conds.append(_c.min_step > from_step)
        if after is not None:
            conds.append(
                or_(
                    _c.min_step > after.min_step,
                    and_(_c.min_step == after.min_step, _c.chunk_id > after.chunk_id),
                )
            )
        rows = await conn.execute(
            select(_c.chunk_id, _c.rank, _c.n, _c.min_step, _c.max_step)
            .where(*conds)
            .order_by(_c.min_step, _c.chunk_id)
            .limit(batch)
        )
        metas = [ChunkMeta(*row) for row in rows]
        for m in metas:
            if total >= size:
                following = m
                break
            picked.append(m)
            total += m.n
        if len(metas) < batch:
            break
        after = metas[-1]
        batch = min(batch * 2, 8192)
    to_step = following.min_step if following is not None else None

    parts = []
    for meta, blob in await load(conn, series, picked):
        p = chunk_points(series, meta, blob, to_step)
        if len(p.steps):
            parts.append(p)
    page = sort_points(concat(parts))

    dropped = 0
    if skip and from_step is not None:
        dropped = min(skip, int(np.searchsorted(page.steps, from_step, side="right")))
        page = page.take(slice(dropped, None))
    if len(page.steps) > size:
        page = page.take(slice(0, size))
        last = int(page.steps[-1])
        at_last = size - int(np.searchsorted(page.steps, last, side="left"))
        if last == from_step:
            at_last += dropped
        return page, _encode_token(last, at_last, fingerprint)
    if to_step is not None:
        return page, _encode_token(to_step, 0, fingerprint)
    return page, ""


# Several series


def check_histories(
    run_ids: Sequence[str],
    keys: Sequence[str],
    *,
    max_points: int,
    start_step: int | None,
    end_step: int | None,
) -> None:
    """The checks of a ``histories`` read that need no database (counts, range, max_points),
    for a caller to make before it looks the runs up."""
    if len(run_ids) > MAX_HISTORIES_RUNS:
        raise InvalidArgument(
            "TOO_MANY_RUNS", f"at most {MAX_HISTORIES_RUNS} run_ids per call", "run_ids"
        )
    if len(keys) > MAX_HISTORIES_KEYS:
        raise InvalidArgument(
            "TOO_MANY_KEYS", f"at most {MAX_HISTORIES_KEYS} keys per call", "keys"
        )
    check_range(start_step, end_step)
    view_points(max_points)


async def histories(
    conn: AsyncConnection,
    run_ids: Sequence[str],
    keys: Sequence[str],
    *,
    max_points: int,
    start_step: int | None,
    end_step: int | None,
) -> list[tuple[str, str, Points]]:
    """(run_id, key, points) for every run and key with points in the range, in request
    order, every rank merged; downsampled per series when ``max_points`` > 0, else every
    point. Either way at most MAX_HISTORIES_POINTS points in all (HISTORY_TOO_LARGE). The
    runs are not looked up: the caller checks that they exist (and so that their ids can be
    bound: PostgreSQL fails a statement that binds NUL)."""
    check_histories(run_ids, keys, max_points=max_points, start_step=start_step,
                    end_step=end_step)  # fmt: skip
    limit = view_points(max_points) if max_points else 0
    run_list = list(dict.fromkeys(run_ids))
    key_list = list(dict.fromkeys(keys))
    if not run_list or not key_list:
        return []

    by_series: dict[tuple[str, str], list[ChunkMeta]] = {}
    rows = await conn.execute(
        select(_c.run_id, _c.key, *META)
        .where(_c.run_id.in_(run_list), _c.key.in_(key_list), *overlapping(start_step, end_step))
        .order_by(_c.run_id, _c.key, _c.min_step, _c.chunk_id)
    )
    for run_id, key, *meta in rows:
        by_series.setdefault((run_id, key), []).append(ChunkMeta(*meta))

    too_large = ResourceExhausted(
        "HISTORY_TOO_LARGE",
        f"the response would hold more than {MAX_HISTORIES_POINTS:,} points; set max_points"
        " (or a smaller one) for downsampled views, or page through each series with"
        " GetMetricHistory",
        "max_points",
    )
    if not limit:
        surely = sum(
            m.n
            for (run_id, key), metas in by_series.items()
            for m in metas
            if SeriesRange(run_id, key, None, start_step, end_step).inside(m)
        )
        if surely > MAX_HISTORIES_POINTS:
            raise too_large
    out: list[tuple[str, str, Points]] = []
    room = MAX_HISTORIES_POINTS
    for run_id in run_list:
        for key in key_list:
            metas = by_series.get((run_id, key))
            if not metas:
                continue
            series = SeriesRange(run_id, key, None, start_step, end_step)
            if limit:
                points = await downsample_series(conn, series, metas, limit)
            else:
                try:
                    points = await collect(conn, series, metas, room)
                except TooMany:
                    raise too_large from None
            room -= len(points.steps)
            if room < 0:  # many downsampled series: the response would still be too big
                raise too_large
            if len(points.steps):
                out.append((run_id, key, points))
    return out
