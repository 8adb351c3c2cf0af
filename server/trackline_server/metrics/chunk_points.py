"""Shared primitives for reading a series' chunk rows: point columns, chunk metadata, the
series and step range a read asks for, range checks, and the loading, sorting and collecting of
chunk points.

Chunks of one series (run, key, rank) may overlap in step range and their points need not be
sorted, so a read never relies on row order alone. Every read first fetches chunk metadata
(no blobs), then loads only the blobs it needs, a bounded group at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import limits
from ..errors import InvalidArgument
from ..models import metric_chunks
from .codec import Floats, Ints, chunk_columns

Ranks = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]

# Largest max_points honoured; larger values are capped.
MAX_VIEW_POINTS = limits.MAX_HISTORY_PAGE
# Blobs are loaded and scanned in groups of about this many points.
BLOCK_POINTS = 2_000_000
MAX_IDS = 500  # ids per IN list

_c = metric_chunks.c


class Points(NamedTuple):
    """Columns of points: steps, timestamps, values and the rank that logged each point."""

    steps: Ints
    timestamps: Ints
    values: Floats
    ranks: Ranks

    @staticmethod
    def empty() -> Points:
        return Points(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64),
            np.empty(0, np.int32),
        )  # fmt: skip

    def take(self, index: npt.NDArray[np.intp] | slice) -> Points:
        return Points(self.steps[index], self.timestamps[index], self.values[index],
                      self.ranks[index])  # fmt: skip


@dataclass(frozen=True)
class ChunkMeta:
    chunk_id: int
    rank: int
    n: int
    min_step: int
    max_step: int
    summarised: bool = False  # the row has a summary (metrics/summary.py)


@dataclass(frozen=True)
class SeriesRange:
    """One series to read (rank None: every rank) and the step range asked for."""

    run_id: str
    key: str
    rank: int | None
    start: int | None
    end: int | None

    def where(self) -> list[ColumnElement[bool]]:
        """Chunks of the series that may hold points in [start, end]."""
        conds = [_c.run_id == self.run_id, _c.key == self.key]
        if self.rank is not None:
            conds.append(_c.rank == self.rank)
        return conds + overlapping(self.start, self.end)

    def inside(self, m: ChunkMeta) -> bool:
        """Whether every point of the chunk is in the range."""
        return (self.start is None or m.min_step >= self.start) and (
            self.end is None or m.max_step <= self.end
        )

    def mask(self, steps: Ints) -> Bools | None:
        """Which of ``steps`` are in the range; None when all are."""
        keep: Bools | None = None
        if self.start is not None:
            keep = steps >= self.start
        if self.end is not None:
            below = steps <= self.end
            keep = below if keep is None else keep & below
        return keep


def overlapping(start: int | None, end: int | None) -> list[ColumnElement[bool]]:
    """Chunks whose step range meets [start, end]."""
    conds = []
    if start is not None:
        conds.append(_c.max_step >= start)
    if end is not None:
        conds.append(_c.min_step <= end)
    return conds


# Validation


def check_range(start_step: int | None, end_step: int | None) -> None:
    if start_step is not None and end_step is not None and start_step > end_step:
        raise InvalidArgument(
            "INVALID_STEP_RANGE",
            f"start_step {start_step} is after end_step {end_step}",
            "start_step",
        )


def view_points(max_points: int) -> int:
    if max_points < 0:
        raise InvalidArgument("INVALID_MAX_POINTS", "max_points must not be negative", "max_points")
    return min(max_points or MAX_VIEW_POINTS, MAX_VIEW_POINTS)


# Chunk metadata and blobs


META = (_c.chunk_id, _c.rank, _c.n, _c.min_step, _c.max_step, _c.summary.is_not(None))


async def fetch_metas(
    conn: AsyncConnection, conds: Sequence[ColumnElement[bool]]
) -> list[ChunkMeta]:
    rows = await conn.execute(select(*META).where(*conds).order_by(_c.min_step, _c.chunk_id))
    return [ChunkMeta(*row) for row in rows]


async def load(
    conn: AsyncConnection,
    series: SeriesRange,
    metas: Sequence[ChunkMeta],
    column: ColumnElement[bytes] = _c.points,
) -> list[tuple[ChunkMeta, bytes]]:
    """Blobs (``column``: the points, or the summaries) of ``metas`` (consecutive in chunk
    order among the chunks ``series`` selects, or at most MAX_IDS), in that order. A chunk
    that vanished is left out; one that appeared is not added."""
    if not metas:
        return []
    wanted = {m.chunk_id for m in metas}
    conds: list[ColumnElement[bool]]
    if len(metas) <= MAX_IDS:
        conds = [_c.chunk_id.in_(wanted)]
    else:  # a key range: one query whatever the number of chunks
        first, last = metas[0], metas[-1]
        conds = series.where() + [
            or_(
                _c.min_step > first.min_step,
                and_(_c.min_step == first.min_step, _c.chunk_id >= first.chunk_id),
            ),
            or_(
                _c.min_step < last.min_step,
                and_(_c.min_step == last.min_step, _c.chunk_id <= last.chunk_id),
            ),
        ]
    rows = await conn.execute(select(_c.chunk_id, column).where(*conds))
    found = {cid: bytes(blob) for cid, blob in rows if cid in wanted and blob is not None}
    return [(m, found[m.chunk_id]) for m in metas if m.chunk_id in found]


def groups(metas: Sequence[ChunkMeta], ids: int | None = None) -> Iterator[list[ChunkMeta]]:
    """Consecutive groups of at most BLOCK_POINTS points (a bigger chunk is a group alone)
    and at most ``ids`` chunks."""
    group: list[ChunkMeta] = []
    total = 0
    for m in metas:
        if group and (total + m.n > BLOCK_POINTS or (ids is not None and len(group) >= ids)):
            yield group
            group, total = [], 0
        group.append(m)
        total += m.n
    if group:
        yield group


# Sorting and collecting whole series


def concat(parts: Sequence[Points]) -> Points:
    if not parts:
        return Points.empty()
    if len(parts) == 1:
        return parts[0]
    return Points(*(np.concatenate([p[i] for p in parts]) for i in range(4)))  # type: ignore[arg-type]


def sort_points(p: Points) -> Points:
    """``p`` ordered by (step, timestamp), ties kept in their current order (a stable sort)."""
    if len(p.steps) < 2:
        return p
    ds = np.diff(p.steps)
    if not ((ds < 0).any() or ((ds == 0) & (np.diff(p.timestamps) < 0)).any()):
        return p
    return p.take(np.lexsort((p.timestamps, p.steps)))


def chunk_points(
    series: SeriesRange, meta: ChunkMeta, blob: bytes, below: int | None = None
) -> Points:
    """The chunk's points in the series' range (and under step ``below``), in chunk order.
    Views into the blob, not copies, when the chunk's steps ascend (the usual case)."""
    steps, stamps, values = chunk_columns(blob)
    keep: Bools | slice | None = None
    if series.inside(meta) and (below is None or meta.max_step < below):
        pass
    elif len(steps) > 1 and bool((steps[1:] >= steps[:-1]).all()):
        lo = 0 if series.start is None else int(np.searchsorted(steps, series.start))
        top = series.end + 1 if series.end is not None else None
        if below is not None:
            top = below if top is None else min(top, below)
        hi = len(steps) if top is None else int(np.searchsorted(steps, top))
        keep = slice(lo, max(lo, hi))
    else:
        mask = series.mask(steps)
        if below is not None:
            mask = steps < below if mask is None else mask & (steps < below)
        keep = mask
    if keep is not None:
        steps, stamps, values = steps[keep], stamps[keep], values[keep]
    return Points(steps, stamps, values, np.full(len(steps), meta.rank, np.int32))


class TooMany(Exception):
    pass


async def collect(
    conn: AsyncConnection, series: SeriesRange, metas: Sequence[ChunkMeta], limit: int | None = None
) -> Points:
    """Every point of the series in its range, sorted; raises TooMany past ``limit``."""
    parts: list[Points] = []
    total = 0
    for group in groups(metas):
        for meta, blob in await load(conn, series, group):
            p = chunk_points(series, meta, blob)
            total += len(p.steps)
            if limit is not None and total > limit:
                raise TooMany
            if len(p.steps):
                parts.append(p)
    return sort_points(concat(parts))
