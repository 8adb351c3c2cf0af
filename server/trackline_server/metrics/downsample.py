"""Chart views of metric series, read from chunk rows: the range a series covers in the view
is cut into equal-width step buckets and each bucket keeps its minimum, maximum and last point
(the kernel: ``downsample_kernel.py``). A chart view loads a chunk's small summary instead of
its points where the summary suffices.
"""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import metric_chunks
from . import summary
from .chunk_points import (
    MAX_IDS,
    ChunkMeta,
    Points,
    Ranks,
    SeriesRange,
    check_range,
    collect,
    fetch_metas,
    groups,
    load,
    view_points,
)
from .codec import Ints, chunk_columns
from .downsample_kernel import Buckets, Grid, Picks, scan

# Chunks smaller than this are concatenated with their neighbours before a downsampling scan,
# so that a series of many tiny chunks costs numpy calls per block, not per chunk.
_SMALL_CHUNK = 65_536

_c = metric_chunks.c


async def _extent(
    conn: AsyncConnection, series: SeriesRange, metas: Sequence[ChunkMeta]
) -> tuple[int, int, int] | None:
    """(lowest step, highest step, number of points) of the series within its range, or None
    when it has no point there. Reads only the chunks that straddle the range's ends."""
    lo: int | None = None
    hi: int | None = None
    count = 0
    edge: list[ChunkMeta] = []
    for m in metas:
        if series.inside(m):
            lo = m.min_step if lo is None else min(lo, m.min_step)
            hi = m.max_step if hi is None else max(hi, m.max_step)
            count += m.n
        else:
            edge.append(m)
    for group in groups(edge, ids=MAX_IDS):  # not consecutive: loaded by id
        for _, blob in await load(conn, series, group):
            steps = chunk_columns(blob)[0]
            keep = series.mask(steps)
            inside = steps if keep is None else steps[keep]
            if len(inside):
                low, high = int(inside.min()), int(inside.max())
                lo = low if lo is None else min(lo, low)
                hi = high if hi is None else max(hi, high)
                count += len(inside)
    if lo is None or hi is None:
        return None
    return lo, hi, count


async def downsample_series(
    conn: AsyncConnection, series: SeriesRange, metas: Sequence[ChunkMeta], max_points: int
) -> Points:
    """``downsample`` of the series' chunks ``metas`` (its chunks in the range, in chunk
    order), ``max_points`` already capped."""
    extent = await _extent(conn, series, metas)
    if extent is None:
        return Points.empty()
    lo, hi, count = extent
    if count <= max_points:
        return await collect(conn, series, metas)
    grid = Grid(lo, hi, max(1, max_points // 3))
    found = Buckets()
    # Series order of a point: its chunk's offset plus its position in the chunk.
    offsets = dict(zip((m.chunk_id for m in metas), np.cumsum([0] + [m.n for m in metas])
                       .tolist(), strict=False))  # fmt: skip
    brief = [m for m in metas if _summary_serves(series, m, grid)]
    for i in range(0, len(brief), MAX_IDS):
        loaded = await load(conn, series, brief[i : i + MAX_IDS], _c.summary)
        _add_summaries(loaded, offsets, grid, found)
    served = {m.chunk_id for m in brief}
    # A worker thread scans one group while the next one loads (numpy releases the GIL), and
    # the event loop stays free for other calls.
    scanning: asyncio.Future[None] | None = None
    try:
        for group in groups([m for m in metas if m.chunk_id not in served]):
            loaded = await load(conn, series, group)
            if scanning is not None:
                await scanning
            scanning = asyncio.ensure_future(
                asyncio.to_thread(_scan_group, loaded, offsets, series, grid, found)
            )
        if scanning is not None:
            await scanning
    finally:
        if scanning is not None and not scanning.done():
            await asyncio.wait([scanning])
    return found.points(max_points)


def _summary_serves(series: SeriesRange, m: ChunkMeta, grid: Grid) -> bool:
    """Whether the chunk's summary stands in for its points: the chunk has one, lies wholly
    in the range, and its blocks are on average at most a quarter of a bucket wide."""
    return (
        m.summarised
        and series.inside(m)
        and (m.max_step - m.min_step + 1) * summary.BLOCK * grid.buckets * 4 <= m.n * grid.span
    )


def _add_summaries(
    loaded: Sequence[tuple[ChunkMeta, bytes]], offsets: dict[int, int], grid: Grid,
    found: Buckets,
) -> None:  # fmt: skip
    """Adds the blocks of summarised chunks, each block whole to the bucket of its first
    step, as if the block's min, max and last were its only points."""
    if not loaded:
        return
    starts = grid.starts(0, grid.buckets - 1)
    picks: tuple[list[Picks], list[Picks], list[Picks]] = ([], [], [])
    for meta, blob in loaded:
        sm = summary.decode(blob)
        bucket = np.searchsorted(starts, sm.first, side="right") - 1
        for out, p in zip(picks, (sm.mins, sm.maxs, sm.lasts), strict=True):
            ok = np.flatnonzero(p.pos >= 0)
            out.append(Picks(bucket[ok], offsets[meta.chunk_id] + p.pos[ok].astype(np.int64),
                              p.steps[ok], p.stamps[ok], p.values[ok],
                              np.full(len(ok), meta.rank, np.int32)))  # fmt: skip
    found.add(*(functools.reduce(operator.add, p) for p in picks))


def _scan_group(
    loaded: Sequence[tuple[ChunkMeta, bytes]],
    offsets: dict[int, int],
    series: SeriesRange,
    grid: Grid,
    found: Buckets,
) -> None:
    """Scans big chunks alone and runs of small ones together."""
    run: list[tuple[ChunkMeta, bytes]] = []
    for item in loaded:
        if item[0].n >= _SMALL_CHUNK:
            _scan_chunks(run, offsets, series, grid, found)
            _scan_chunks([item], offsets, series, grid, found)
            run = []
        else:
            run.append(item)
    _scan_chunks(run, offsets, series, grid, found)


def _scan_chunks(
    items: Sequence[tuple[ChunkMeta, bytes]],
    offsets: dict[int, int],
    series: SeriesRange,
    grid: Grid,
    found: Buckets,
) -> None:
    """Scans chunks (in series order) as one block."""
    if not items:
        return
    cols = [chunk_columns(blob) for _, blob in items]
    if len(items) == 1:
        steps, stamps, values = cols[0]
    else:
        steps = np.concatenate([c[0] for c in cols])
        stamps = np.concatenate([c[1] for c in cols])
        values = np.concatenate([c[2] for c in cols])
    # Where each chunk starts in the block, its series order offset and its rank.
    begin = np.cumsum([0] + [m.n for m, _ in items[:-1]])
    base = np.array([offsets[m.chunk_id] for m, _ in items], np.int64)
    rank = np.array([m.rank for m, _ in items], np.int32)

    def locate(positions: Ints) -> tuple[Ints, Ranks]:
        which = np.searchsorted(begin, positions, side="right") - 1
        return base[which] + positions - begin[which], rank[which]

    pos = None
    if not all(series.inside(m) for m, _ in items):
        keep = series.mask(steps)
        if keep is not None:
            pos = np.flatnonzero(keep)
            steps, stamps, values = steps[pos], stamps[pos], values[pos]
    scan(steps, stamps, values, pos, locate, grid, found)


async def downsample(
    conn: AsyncConnection,
    run_id: str,
    key: str,
    *,
    rank: int | None,
    start_step: int | None,
    end_step: int | None,
    max_points: int,
) -> Points:
    """At most ``max_points`` points of the series in [start_step, end_step] for a chart: the
    range the series covers is cut into max_points // 3 equal-width step buckets, and each
    bucket keeps its minimum, maximum (NaN ignored) and last point, so no spike is lost;
    every point returned is a stored one. A series with no more than ``max_points`` points
    comes back whole. Sorted by step; 0 means the cap.

    A chunk that has a summary, lies wholly in the range and whose summary blocks are at most
    a quarter of a bucket wide on average is read from its summary alone (metrics/summary.py):
    each of its blocks of 512 points goes whole to the bucket of the block's first step, so
    for its points a bucket edge moves to a block edge. Other chunks are read point by
    point. The run is not looked up: the caller checks that it exists."""
    check_range(start_step, end_step)
    limit = view_points(max_points)
    series = SeriesRange(run_id, key, rank, start_step, end_step)
    return await downsample_series(conn, series, await fetch_metas(conn, series.where()), limit)
