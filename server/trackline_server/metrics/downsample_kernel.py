"""The downsampling kernel, pure numpy (no database): the step range of a series is cut into
equal-width buckets (``Grid``), and each bucket keeps three of its points (``Buckets``): the
first with the minimum value, the first with the maximum value (NaN ignored for both) and the
last (highest step, then latest timestamp, then latest in series order). Points come in blocks
(``scan``); a bucket's choice over several blocks is the same as over all its points at once.

Ties: among equal values the lower step wins, then the earlier point in series order. A
point's series order is a number the caller gives (``Locate``): for chunk rows, the chunk's
offset in the series plus the point's position in the chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .chunk_points import Bools, Points, Ranks
from .codec import Floats, Ints

# Segments at least this long on average are reduced one numpy call each.
_LONG_SEGMENT = 2_000


@dataclass(frozen=True)
class Grid:
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
class Picks:
    """Chosen points with their bucket and their position in series order (``order``)."""

    bucket: Ints
    order: Ints
    steps: Ints
    stamps: Ints
    values: Floats
    ranks: Ranks

    @staticmethod
    def empty() -> Picks:
        e = np.empty(0, np.int64)
        return Picks(e, e, e, e, np.empty(0, np.float64), np.empty(0, np.int32))

    def take(self, index: npt.NDArray[np.intp]) -> Picks:
        return Picks(self.bucket[index], self.order[index], self.steps[index],
                      self.stamps[index], self.values[index], self.ranks[index])  # fmt: skip

    def __add__(self, other: Picks) -> Picks:
        return Picks(*(np.concatenate((getattr(self, f), getattr(other, f))) for f in _PICK_FIELDS))


_PICK_FIELDS = ("bucket", "order", "steps", "stamps", "values", "ranks")


def _first_per_bucket(p: Picks, order: npt.NDArray[np.intp], last: bool = False) -> Picks:
    """Of ``p`` sorted by ``order`` (bucket first), the first (or last) entry of each bucket."""
    if not len(order):
        return p
    b = p.bucket[order]
    if last:
        edge = np.append(b[1:] != b[:-1], True)
    else:
        edge = np.insert(b[1:] != b[:-1], 0, True)
    return p.take(order[edge])


def _reduce_min(p: Picks) -> Picks:
    return _first_per_bucket(p, np.lexsort((p.order, p.steps, p.values, p.bucket)))


def _reduce_max(p: Picks) -> Picks:
    return _first_per_bucket(p, np.lexsort((p.order, p.steps, -p.values, p.bucket)))


def _reduce_last(p: Picks) -> Picks:
    return _first_per_bucket(p, np.lexsort((p.order, p.stamps, p.steps, p.bucket)), last=True)


class Buckets:
    """Per bucket: the point with the minimum value, the one with the maximum value (NaN
    ignored) and the last one (highest step, then latest timestamp, then series order)."""

    def __init__(self) -> None:
        self.mins = Picks.empty()
        self.maxs = Picks.empty()
        self.lasts = Picks.empty()

    def add(self, mins: Picks, maxs: Picks, lasts: Picks) -> None:
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


def scan(
    steps: Ints,
    stamps: Ints,
    values: Floats,
    pos: Ints | None,
    locate: Locate,
    grid: Grid,
    found: Buckets,
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

    def picks(index: Ints, segment: Ints | None = None) -> Picks:
        order, ranks = locate(position(index))
        b = bucket if segment is None else bucket[segment]
        return Picks(b, order, steps[index], stamps[index], values[index], ranks)

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
