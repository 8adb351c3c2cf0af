"""Reads of metric series from chunk rows: step-ordered pages, chart downsampling, and the
multi-series read of GetMetricHistories.

Chunks of one series (run, key, rank) may overlap in step range and their points need not be
sorted, so a read never relies on row order alone. Every read first fetches chunk metadata
(no blobs), then loads only the blobs it needs, a bounded group at a time; a chart view
loads a chunk's small summary instead of its points where the summary suffices.

Order of points: (step, timestamp, chunk order, position in chunk), where chunk order is
(min_step, chunk_id). A page token is tied to that order: it holds the step to resume at and
how many points at that step earlier pages returned. Chunks written between two pages may
therefore show up in a later page or shift a page boundary by the points they add.
"""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from trackline.v1 import resources_pb2 as pb

from .. import limits, page_tokens, store
from ..errors import InvalidArgument, NotFound, ResourceExhausted
from ..models import metric_chunks, runs
from . import summary
from .chunks import Floats, Ints, columns, encode_varint

Ranks = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]

# Largest max_points honoured; larger values are capped.
MAX_VIEW_POINTS = limits.MAX_HISTORY_PAGE
# GetMetricHistories: at most this many runs and keys, and without max_points at most this many
# points over all series.
MAX_HISTORIES_RUNS = 100
MAX_HISTORIES_KEYS = 100
MAX_HISTORIES_POINTS = 1_000_000
# Blobs are loaded and scanned in groups of about this many points.
BLOCK_POINTS = 2_000_000
# Chunks smaller than this are concatenated with their neighbours before a downsampling scan,
# so that a series of many tiny chunks costs numpy calls per block, not per chunk.
_SMALL_CHUNK = 65_536
_MAX_IDS = 500  # ids per IN list
# Segments at least this long on average are reduced one numpy call each.
_LONG_SEGMENT = 2_000
_TOKEN_VERSION = 1

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


def fill_series(series: pb.MetricSeries, key: str, points: Points) -> None:
    """Sets a MetricSeries to the columns: encoded with numpy and parsed in one call, several
    times faster than ``extend`` even from lists."""
    series.key = key
    if not len(points.steps):
        return
    fields = series.DESCRIPTOR.fields_by_name
    series.MergeFromString(b"".join((
        _packed(fields["steps"].number, _varints(points.steps)),
        _packed(fields["timestamps"].number, _varints(points.timestamps)),
        _packed(fields["values"].number, np.ascontiguousarray(points.values, "<f8").tobytes()),
    )))  # fmt: skip


def extend_ints(message: Message, field: str, values: npt.NDArray[np.integer[Any]]) -> None:
    """Appends ``values`` to a packed repeated integer field (as ``fill_series`` does)."""
    if len(values):
        data = _varints(values.astype(np.int64, copy=False))
        message.MergeFromString(_packed(message.DESCRIPTOR.fields_by_name[field].number, data))


def _packed(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    if not payload:
        return b""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def _varints(values: Ints) -> bytes:
    """Protobuf varints of int64 values, concatenated. Fast when the values share one
    varint width (ranks, timestamps) or ascend (steps): then each run of one width is a
    matrix of bytes with no gaps."""
    if not len(values):
        return b""
    u = values.view(np.uint64)
    lo, hi = int(u.min()), int(u.max())
    if lo == hi:
        return encode_varint(lo) * len(u)
    first, last = len(encode_varint(lo)), len(encode_varint(hi))
    if first == last:
        return _same_width(u, last)
    if bool((u[1:] >= u[:-1]).all()):  # ascending: one run per width
        bounds = np.uint64(1) << np.arange(7 * first, 7 * last, 7, dtype=np.uint64)
        cuts = [0, *np.searchsorted(u, bounds).tolist(), len(u)]
        runs = zip(range(first, last + 1), cuts[:-1], cuts[1:], strict=True)
        return b"".join(_same_width(u[a:b], width) for width, a, b in runs if b > a)
    return _mixed_widths(u, last)


def _same_width(u: npt.NDArray[np.uint64], width: int) -> bytes:
    """Varints of values that all take ``width`` bytes."""
    rows = np.empty((width, len(u)), np.uint8)  # byte k of every value, then transposed
    shifted = np.empty_like(u)
    for k in range(width):
        np.right_shift(u, np.uint64(7 * k), out=shifted)
        rows[k] = shifted  # keeps the low 8 bits; bit 7 is set below or is 0 (last byte)
    rows[:-1] |= np.uint8(0x80)
    return rows.T.tobytes()


def _mixed_widths(u: npt.NDArray[np.uint64], width: int) -> bytes:
    """Varints of any values, the widest taking ``width`` bytes."""
    out = np.empty((len(u), width), np.uint8)
    used = np.ones((len(u), width), np.bool_)
    for k in range(width):
        byte = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        if k + 1 < width:
            more = u >= np.uint64(1 << (7 * (k + 1)))
            byte |= more.astype(np.uint8) << np.uint8(7)
            used[:, k + 1] = more
        out[:, k] = byte
    # Row-major order puts each value's bytes together; unused trailing bytes are dropped.
    return out[used].tobytes()


@dataclass(frozen=True)
class ChunkMeta:
    chunk_id: int
    rank: int
    n: int
    min_step: int
    max_step: int
    summarised: bool = False  # the row has a summary (ingest/summary.py)


@dataclass(frozen=True)
class _Series:
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
        return conds + _overlapping(self.start, self.end)

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


def _overlapping(start: int | None, end: int | None) -> list[ColumnElement[bool]]:
    """Chunks whose step range meets [start, end]."""
    conds = []
    if start is not None:
        conds.append(_c.max_step >= start)
    if end is not None:
        conds.append(_c.min_step <= end)
    return conds


# Validation


def _check_range(start_step: int | None, end_step: int | None) -> None:
    if start_step is not None and end_step is not None and start_step > end_step:
        raise InvalidArgument(
            "INVALID_STEP_RANGE",
            f"start_step {start_step} is after end_step {end_step}",
            "start_step",
        )


def _view_points(max_points: int) -> int:
    if max_points < 0:
        raise InvalidArgument("INVALID_MAX_POINTS", "max_points must not be negative", "max_points")
    return min(max_points or MAX_VIEW_POINTS, MAX_VIEW_POINTS)


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


# Chunk metadata and blobs


_META = (_c.chunk_id, _c.rank, _c.n, _c.min_step, _c.max_step, _c.summary.is_not(None))


async def _metas(conn: AsyncConnection, conds: Sequence[ColumnElement[bool]]) -> list[ChunkMeta]:
    rows = await conn.execute(select(*_META).where(*conds).order_by(_c.min_step, _c.chunk_id))
    return [ChunkMeta(*row) for row in rows]


async def _load(
    conn: AsyncConnection,
    series: _Series,
    metas: Sequence[ChunkMeta],
    column: ColumnElement[bytes] = _c.points,
) -> list[tuple[ChunkMeta, bytes]]:
    """Blobs (``column``: the points, or the summaries) of ``metas`` (consecutive in chunk
    order among the chunks ``series`` selects, or at most _MAX_IDS), in that order. A chunk
    that vanished is left out; one that appeared is not added."""
    if not metas:
        return []
    wanted = {m.chunk_id for m in metas}
    conds: list[ColumnElement[bool]]
    if len(metas) <= _MAX_IDS:
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


def _groups(metas: Sequence[ChunkMeta], ids: int | None = None) -> Iterator[list[ChunkMeta]]:
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


def _concat(parts: Sequence[Points]) -> Points:
    if not parts:
        return Points.empty()
    if len(parts) == 1:
        return parts[0]
    return Points(*(np.concatenate([p[i] for p in parts]) for i in range(4)))  # type: ignore[arg-type]


def _sorted(p: Points) -> Points:
    """``p`` ordered by (step, timestamp), ties kept in their current order (a stable sort)."""
    if len(p.steps) < 2:
        return p
    ds = np.diff(p.steps)
    if not ((ds < 0).any() or ((ds == 0) & (np.diff(p.timestamps) < 0)).any()):
        return p
    return p.take(np.lexsort((p.timestamps, p.steps)))


def _chunk_points(
    series: _Series, meta: ChunkMeta, blob: bytes, below: int | None = None
) -> Points:
    """The chunk's points in the series' range (and under step ``below``), in chunk order.
    Views into the blob, not copies, when the chunk's steps ascend (the usual case)."""
    steps, stamps, values = columns(blob)
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


class _TooMany(Exception):
    pass


async def _collect(
    conn: AsyncConnection, series: _Series, metas: Sequence[ChunkMeta], limit: int | None = None
) -> Points:
    """Every point of the series in its range, sorted; raises _TooMany past ``limit``."""
    parts: list[Points] = []
    total = 0
    for group in _groups(metas):
        for meta, blob in await _load(conn, series, group):
            p = _chunk_points(series, meta, blob)
            total += len(p.steps)
            if limit is not None and total > limit:
                raise _TooMany
            if len(p.steps):
                parts.append(p)
    return _sorted(_concat(parts))


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
    the next page's token ("" at the end). Reads only the chunks the page needs."""
    _check_range(start_step, end_step)
    if page_size < 0:
        raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative", "page_size")
    size = min(page_size or limits.DEFAULT_HISTORY_PAGE, limits.MAX_HISTORY_PAGE)
    await store.get_run_row(conn, run_id)
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
    series = _Series(run_id, key, rank, from_step, end_step)

    # Chunks holding from_step always belong to the page; then chunks in order until the page
    # has enough points. The first chunk left out bounds the page: its min_step is to_step.
    picked: list[ChunkMeta] = []
    if from_step is not None:
        picked = await _metas(conn, series.where() + [_c.min_step <= from_step])
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
    for meta, blob in await _load(conn, series, picked):
        p = _chunk_points(series, meta, blob, to_step)
        if len(p.steps):
            parts.append(p)
    page = _sorted(_concat(parts))

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


# Downsampling


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
    conn: AsyncConnection, series: _Series, metas: Sequence[ChunkMeta]
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
    for group in _groups(edge, ids=_MAX_IDS):  # not consecutive: loaded by id
        for _, blob in await _load(conn, series, group):
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


async def _downsample(
    conn: AsyncConnection, series: _Series, metas: Sequence[ChunkMeta], max_points: int
) -> Points:
    extent = await _extent(conn, series, metas)
    if extent is None:
        return Points.empty()
    lo, hi, count = extent
    if count <= max_points:
        return await _collect(conn, series, metas)
    grid = _Grid(lo, hi, max(1, max_points // 3))
    found = _Buckets()
    # Series order of a point: its chunk's offset plus its position in the chunk.
    offsets = dict(zip((m.chunk_id for m in metas), np.cumsum([0] + [m.n for m in metas])
                       .tolist(), strict=False))  # fmt: skip
    brief = [m for m in metas if _summary_serves(series, m, grid)]
    for i in range(0, len(brief), _MAX_IDS):
        loaded = await _load(conn, series, brief[i : i + _MAX_IDS], _c.summary)
        _add_summaries(loaded, offsets, grid, found)
    served = {m.chunk_id for m in brief}
    # A worker thread scans one group while the next one loads (numpy releases the GIL), and
    # the event loop stays free for other calls.
    scanning: asyncio.Future[None] | None = None
    try:
        for group in _groups([m for m in metas if m.chunk_id not in served]):
            loaded = await _load(conn, series, group)
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


def _summary_serves(series: _Series, m: ChunkMeta, grid: _Grid) -> bool:
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
    series: _Series,
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
    series: _Series,
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
    a quarter of a bucket wide on average is read from its summary alone (ingest/summary.py):
    each of its blocks of 512 points goes whole to the bucket of the block's first step, so
    for its points a bucket edge moves to a block edge. Other chunks are read point by
    point."""
    _check_range(start_step, end_step)
    limit = _view_points(max_points)
    await store.get_run_row(conn, run_id)
    series = _Series(run_id, key, rank, start_step, end_step)
    return await _downsample(conn, series, await _metas(conn, series.where()), limit)


# Several series


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
    point. Either way at most MAX_HISTORIES_POINTS points in all (HISTORY_TOO_LARGE)."""
    if len(run_ids) > MAX_HISTORIES_RUNS:
        raise InvalidArgument(
            "TOO_MANY_RUNS", f"at most {MAX_HISTORIES_RUNS} run_ids per call", "run_ids"
        )
    if len(keys) > MAX_HISTORIES_KEYS:
        raise InvalidArgument(
            "TOO_MANY_KEYS", f"at most {MAX_HISTORIES_KEYS} keys per call", "keys"
        )
    _check_range(start_step, end_step)
    limit = _view_points(max_points) if max_points else 0
    run_list = list(dict.fromkeys(run_ids))
    key_list = list(dict.fromkeys(keys))
    if not run_list:
        return []
    known = set(
        (await conn.execute(select(runs.c.run_id).where(runs.c.run_id.in_(run_list)))).scalars()
    )
    for i, run_id in enumerate(run_ids):
        if run_id not in known:
            raise NotFound("RUN_NOT_FOUND", f"no run with id {run_id!r}", f"run_ids[{i}]")
    if not key_list:
        return []

    by_series: dict[tuple[str, str], list[ChunkMeta]] = {}
    rows = await conn.execute(
        select(_c.run_id, _c.key, *_META)
        .where(_c.run_id.in_(run_list), _c.key.in_(key_list), *_overlapping(start_step, end_step))
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
            if _Series(run_id, key, None, start_step, end_step).inside(m)
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
            series = _Series(run_id, key, None, start_step, end_step)
            if limit:
                points = await _downsample(conn, series, metas, limit)
            else:
                try:
                    points = await _collect(conn, series, metas, room)
                except _TooMany:
                    raise too_large from None
            room -= len(points.steps)
            if room < 0:  # many downsampled series: the response would still be too big
                raise too_large
            if len(points.steps):
                out.append((run_id, key, points))
    return out
