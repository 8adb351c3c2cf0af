"""Chart downsampling of metric series from chunk rows: the range a series covers is cut into
equal-width step buckets and each bucket keeps its minimum, maximum and last point. A chart
view loads a chunk's small summary instead of its points where the summary suffices.
"""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import metric_chunks
from ..tracking import runs as run_queries
from . import summary
from .chunk_points import (
    MAX_IDS,
    Bools,
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
from .chunks import Floats, Ints, columns

# Chunks smaller than this are concatenated with their neighbours before a downsampling scan,
# so that a series of many tiny chunks costs numpy calls per block, not per chunk.
_SMALL_CHUNK = 65_536
# Segments at least this long on average are reduced one numpy call each.
_LONG_SEGMENT = 2_000

_c = metric_chunks.c


@dataclass(frozen=True)
class _Grid:
    """``buckets`` equal-width step buckets over [lo, hi]: step s is in bucket
    floor((s - lo) * buckets / (hi - lo + 1))."""

    lo: int
    hi: int
    buckets: int

    @property
    def span(self) -> int:
        return self.hi - self.lo + 1

    def bucket(self, step: int) -> int:
        return (step - self.lo) * self.buckets // self.span

    def starts(self, first: int, last: int) -> Ints:
        """The first step of each bucket from ``first`` to ``last``."""
        b = np.arange(first, last + 1, dtype=np.int64)
        if self.span * self.buckets < 2**62 and -(2**62) < self.lo < 2**62:
            return self.lo + (b * self.span + (self.buckets - 1)) // self.buckets
        return np.array(
            [self.lo - (-int(x) * self.span // self.buckets) for x in b.tolist()], np.int64
        )


@dataclass
class _Picks:
    """Chosen points with their bucket and their position in series order (``order``)."""

    bucket: Ints
    order: Ints
    steps: Ints
    stamps: Ints
    values: Floats
    ranks: Ranks

    @staticmethod
    def empty() -> _Picks:
        e = np.empty(0, np.int64)
        return _Picks(e, e, e, e, np.empty(0, np.float64), np.empty(0, np.int32))

    def take(self, index: npt.NDArray[np.intp]) -> _Picks:
        return _Picks(self.bucket[index], self.order[index], self.steps[index],
                      self.stamps[index], self.values[index], self.ranks[index])  # fmt: skip

    def __add__(self, other: _Picks) -> _Picks:
        return _Picks(
            *(np.concatenate((getattr(self, f), getattr(other, f))) for f in _PICK_FIELDS)
        )


_PICK_FIELDS = ("bucket", "order", "steps", "stamps", "values", "ranks")


def _first_per_bucket(p: _Picks, order: npt.NDArray[np.intp], last: bool = False) -> _Picks:
    """Of ``p`` sorted by ``order`` (bucket first), the first (or last) entry of each bucket."""
    if not len(order):
        return p
    b = p.bucket[order]
    if last:
        edge = np.append(b[1:] != b[:-1], True)
    else:
        edge = np.insert(b[1:] != b[:-1], 0, True)
    return p.take(order[edge])


def _reduce_min(p: _Picks) -> _Picks:
    return _first_per_bucket(p, np.lexsort((p.order, p.steps, p.values, p.bucket)))


def _reduce_max(p: _Picks) -> _Picks:
    return _first_per_bucket(p, np.lexsort((p.order, p.steps, -p.values, p.bucket)))


def _reduce_last(p: _Picks) -> _Picks:
    return _first_per_bucket(p, np.lexsort((p.order, p.stamps, p.steps, p.bucket)), last=True)


class _Buckets:
    """Per bucket: the point with the minimum value, the one with the maximum value (NaN
    ignored) and the last one (highest step, then latest timestamp, then series order)."""

    def __init__(self) -> None:
        self.mins = _Picks.empty()
        self.maxs = _Picks.empty()
        self.lasts = _Picks.empty()

    def add(self, mins: _Picks, maxs: _Picks, lasts: _Picks) -> None:
        self.mins = _reduce_min(self.mins + mins)
        self.maxs = _reduce_max(self.maxs + maxs)
        self.lasts = _reduce_last(self.lasts + lasts)

    def points(self, max_points: int) -> Points:
        """The chosen points without repeats, sorted. Under 3 points (one bucket): for 2 the
        extremes (or the last point when they coincide), for 1 the last point."""
        chosen = self.lasts if max_points == 1 else self.mins + self.maxs + self.lasts
        _, first = np.unique(chosen.order, return_index=True)
        chosen = chosen.take(np.sort(first)[:max_points])
        o = np.lexsort((chosen.order, chosen.stamps, chosen.steps))
        return Points(chosen.steps[o], chosen.stamps[o], chosen.values[o], chosen.ranks[o])


def _segment_extremes(values: Floats, starts: Ints, ends: Ints) -> tuple[Ints, Bools, Ints, Bools]:
    """Index of the first minimum and of the first maximum of each segment [starts[i],
    ends[i]) (the segments tile ``values``), NaN ignored, with flags that are False for an
    all-NaN segment."""
    k = len(starts)
    if len(values) >= _LONG_SEGMENT * k:
        # Few long segments: one argmin and one argmax each beats array-wide temporaries.
        lo_i, hi_i = np.empty(k, np.int64), np.empty(k, np.int64)
        ok = np.ones(k, np.bool_)
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            seg = values[a:b]
            j = int(seg.argmin())
            if seg[j] == seg[j]:  # not NaN, so the segment has no NaN
                lo_i[i], hi_i[i] = a + j, a + int(seg.argmax())
                continue
            finite = np.flatnonzero(~np.isnan(seg))
            if not len(finite):
                ok[i] = False
                lo_i[i] = hi_i[i] = a
                continue
            lo_i[i] = a + int(finite[seg[finite].argmin()])
            hi_i[i] = a + int(finite[seg[finite].argmax()])
        return lo_i, ok, hi_i, ok

    def first_hit(reduce: np.ufunc) -> tuple[Ints, Bools]:
        extreme = reduce.reduceat(values, starts)
        hits = np.flatnonzero(values == np.repeat(extreme, ends - starts))
        if not len(hits):
            return starts, np.zeros(k, np.bool_)
        index = hits[np.minimum(np.searchsorted(hits, starts), len(hits) - 1)]
        return index, (index >= starts) & (index < ends)

    return *first_hit(np.fmin), *first_hit(np.fmax)


Locate = Callable[[Ints], tuple[Ints, Ranks]]


def _scan(
    steps: Ints,
    stamps: Ints,
    values: Floats,
    pos: Ints | None,
    locate: Locate,
    grid: _Grid,
    found: _Buckets,
) -> None:
    """Adds the bucket extremes of a block of points, all within [grid.lo, grid.hi]. ``pos``
    holds each point's position in the block (None: its index), which increases with series
    order; ``locate`` maps positions to (series order, rank)."""
    if not len(steps):
        return
    if len(steps) > 1 and bool((steps[1:] < steps[:-1]).any()):
        perm = np.argsort(steps, kind="stable")  # timsort: cheap for runs of sorted points
        steps, stamps, values = steps[perm], stamps[perm], values[perm]
        pos = perm if pos is None else pos[perm]
    n = len(steps)
    first, last = grid.bucket(int(steps[0])), grid.bucket(int(steps[-1]))
    inner = np.searchsorted(steps, grid.starts(first + 1, last), side="left")
    bounds = np.concatenate(([0], inner, [n]))
    full = bounds[1:] > bounds[:-1]
    starts, ends = bounds[:-1][full], bounds[1:][full]
    bucket = np.arange(first, last + 1, dtype=np.int64)[full]

    def position(index: Ints) -> Ints:
        return index if pos is None else pos[index]

    def picks(index: Ints, segment: Ints | None = None) -> _Picks:
        order, ranks = locate(position(index))
        b = bucket if segment is None else bucket[segment]
        return _Picks(b, order, steps[index], stamps[index], values[index], ranks)

    lo_i, lo_ok, hi_i, hi_ok = _segment_extremes(values, starts, ends)
    mins = picks(lo_i[lo_ok], np.flatnonzero(lo_ok))
    maxs = picks(hi_i[hi_ok], np.flatnonzero(hi_ok))

    # Last point: the segment's last index, unless several points share its (highest) step;
    # then the latest timestamp, then the latest in series order (position order).
    tail = ends - 1
    lasts_i = tail.copy()
    tied = np.flatnonzero((tail > starts) & (steps[np.maximum(tail - 1, 0)] == steps[tail]))
    if len(tied):
        run_start = np.maximum(np.searchsorted(steps, steps[tail], side="left"), starts)
        lengths = tail[tied] - run_start[tied] + 1
        seg = np.repeat(tied, lengths)
        idx = np.arange(int(lengths.sum())) + np.repeat(
            run_start[tied] - np.cumsum(lengths) + lengths, lengths
        )
        o = np.lexsort((position(idx), stamps[idx], seg))
        seg_sorted = seg[o]
        end_of_run = np.append(seg_sorted[1:] != seg_sorted[:-1], True)
        lasts_i[seg_sorted[end_of_run]] = idx[o][end_of_run]
    found.add(mins, maxs, picks(lasts_i))


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
            steps = columns(blob)[0]
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
    extent = await _extent(conn, series, metas)
    if extent is None:
        return Points.empty()
    lo, hi, count = extent
    if count <= max_points:
        return await collect(conn, series, metas)
    grid = _Grid(lo, hi, max(1, max_points // 3))
    found = _Buckets()
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


def _summary_serves(series: SeriesRange, m: ChunkMeta, grid: _Grid) -> bool:
    """Whether the chunk's summary stands in for its points: the chunk has one, lies wholly
    in the range, and its blocks are on average at most a quarter of a bucket wide."""
    return (
        m.summarised
        and series.inside(m)
        and (m.max_step - m.min_step + 1) * summary.BLOCK * grid.buckets * 4 <= m.n * grid.span
    )


def _add_summaries(
    loaded: Sequence[tuple[ChunkMeta, bytes]], offsets: dict[int, int], grid: _Grid,
    found: _Buckets,
) -> None:  # fmt: skip
    """Adds the blocks of summarised chunks, each block whole to the bucket of its first
    step, as if the block's min, max and last were its only points."""
    if not loaded:
        return
    starts = grid.starts(0, grid.buckets - 1)
    picks: tuple[list[_Picks], list[_Picks], list[_Picks]] = ([], [], [])
    for meta, blob in loaded:
        sm = summary.decode(blob)
        bucket = np.searchsorted(starts, sm.first, side="right") - 1
        for out, p in zip(picks, (sm.mins, sm.maxs, sm.lasts), strict=True):
            ok = np.flatnonzero(p.pos >= 0)
            out.append(_Picks(bucket[ok], offsets[meta.chunk_id] + p.pos[ok].astype(np.int64),
                              p.steps[ok], p.stamps[ok], p.values[ok],
                              np.full(len(ok), meta.rank, np.int32)))  # fmt: skip
    found.add(*(functools.reduce(operator.add, p) for p in picks))


def _scan_group(
    loaded: Sequence[tuple[ChunkMeta, bytes]],
    offsets: dict[int, int],
    series: SeriesRange,
    grid: _Grid,
    found: _Buckets,
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
    grid: _Grid,
    found: _Buckets,
) -> None:
    """Scans chunks (in series order) as one block."""
    if not items:
        return
    cols = [columns(blob) for _, blob in items]
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
    _scan(steps, stamps, values, pos, locate, grid, found)


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
    point."""
    check_range(start_step, end_step)
    limit = view_points(max_points)
    await run_queries.get_row(conn, run_id)
    series = SeriesRange(run_id, key, rank, start_step, end_step)
    return await downsample_series(conn, series, await fetch_metas(conn, series.where()), limit)
