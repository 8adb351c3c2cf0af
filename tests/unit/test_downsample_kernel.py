"""The downsampling kernel (metrics/downsample_kernel.py) against a brute-force oracle: per
bucket, the first point with the minimum value and the first with the maximum (NaN ignored;
ties to the lower step, then the earlier point) and the last point (highest step, then latest
timestamp, then the later point), whatever the values (NaN, infinities, signed zeros, ties),
steps (int64's edges included) and blocks the points arrive in."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trackline_server.metrics.chunk_points import Points
from trackline_server.metrics.downsample_kernel import Buckets, Grid, Picks, scan

I64 = np.iinfo(np.int64)
EDGES = [int(I64.min), int(I64.min) + 1, -1, 0, 1, int(I64.max) - 1, int(I64.max)]

steps_ = st.one_of(
    st.integers(-3, 3),  # many points per step: ties
    st.sampled_from(EDGES),
    st.integers(int(I64.min), int(I64.max)),
)
stamps_ = st.integers(0, 3)
values_ = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@dataclass(frozen=True)
class Point:
    step: int
    stamp: int
    value: float
    order: int  # position in series order

    @property
    def rank(self) -> int:
        return self.order % 4  # what ``locate`` below says


@dataclass
class Case:
    points: list[Point]
    grid: Grid
    cuts: list[int]  # the blocks [cuts[i], cuts[i + 1]) scanned one after another
    dropped: set[int]  # orders of points a block leaves out (a step range's mask)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(0, 40))
    points = [
        Point(draw(steps_), draw(stamps_), draw(values_), i) for i in range(n)
    ]  # fmt: skip
    steps = [p.step for p in points] or [0]
    lo, hi = min(steps), max(steps)
    # The grid as downsample makes it (the extent of the points), or wider.
    lo -= draw(st.integers(0, min(5, lo - int(I64.min))))
    hi += draw(st.integers(0, min(5, int(I64.max) - hi)))
    grid = Grid(lo, hi, draw(st.integers(1, 8)))
    inner = draw(st.lists(st.integers(0, n), max_size=4))
    cuts = sorted({0, n, *inner})
    dropped = set(draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n // 3)))
    return Case(points, grid, cuts, dropped if n else set())


def scanned(case: Case) -> Buckets:
    """The kernel's buckets after scanning each block, as downsample's chunk scans do."""
    found = Buckets()
    cols = {
        "steps": np.array([p.step for p in case.points], np.int64),
        "stamps": np.array([p.stamp for p in case.points], np.int64),
        "values": np.array([p.value for p in case.points], np.float64),
    }
    for a, b in zip(case.cuts, case.cuts[1:], strict=False):
        steps, stamps, values = (c[a:b] for c in cols.values())

        def locate(positions: np.ndarray, a: int = a) -> tuple[np.ndarray, np.ndarray]:
            order = positions + a
            return order, (order % 4).astype(np.int32)

        keep = np.array([a + i not in case.dropped for i in range(b - a)], np.bool_)
        pos = None
        if not keep.all():
            pos = np.flatnonzero(keep).astype(np.int64)
            steps, stamps, values = steps[pos], stamps[pos], values[pos]
        scan(steps, stamps, values, pos, locate, case.grid, found)
    return found


@dataclass
class Oracle:
    mins: dict[int, Point]
    maxs: dict[int, Point]
    lasts: dict[int, Point]


def oracle(case: Case) -> Oracle:
    """Each bucket's three points, one bucket at a time, by the documented rule."""
    grid = case.grid
    members: dict[int, list[Point]] = {}
    for p in case.points:
        if p.order not in case.dropped:
            bucket = (p.step - grid.lo) * grid.buckets // (grid.hi - grid.lo + 1)
            members.setdefault(bucket, []).append(p)
    out = Oracle({}, {}, {})
    for bucket, points in members.items():
        numbers = [p for p in points if not math.isnan(p.value)]
        if numbers:
            out.mins[bucket] = min(numbers, key=lambda p: (p.value, p.step, p.order))
            out.maxs[bucket] = min(numbers, key=lambda p: (-p.value, p.step, p.order))
        out.lasts[bucket] = max(points, key=lambda p: (p.step, p.stamp, p.order))
    return out


def picked(picks: Picks) -> dict[int, int]:
    """bucket -> order of the chosen point (one per bucket)."""
    buckets = picks.bucket.tolist()
    assert len(set(buckets)) == len(buckets)
    return dict(zip(buckets, picks.order.tolist(), strict=True))


def as_tuples(points: Points) -> list[tuple[int, int, str, int]]:
    """The points as comparable tuples (values by their repr, so NaN equals NaN and -0.0
    differs from 0.0)."""
    return [(s, t, repr(v), r) for s, t, v, r in zip(points.steps.tolist(),
            points.timestamps.tolist(), points.values.tolist(), points.ranks.tolist(),
            strict=True)]  # fmt: skip


def check_buckets(case: Case) -> None:
    found, want = scanned(case), oracle(case)
    by_order = {p.order: p for p in case.points}
    for got, expected in ((found.mins, want.mins), (found.maxs, want.maxs),
                          (found.lasts, want.lasts)):  # fmt: skip
        assert picked(got) == {b: p.order for b, p in expected.items()}
        for step, stamp, value, order, rank in zip(got.steps.tolist(), got.stamps.tolist(),
                                                   got.values.tolist(), got.order.tolist(),
                                                   got.ranks.tolist(), strict=True):  # fmt: skip
            p = by_order[order]
            assert (step, stamp, repr(value), rank) == (p.step, p.stamp, repr(p.value), p.rank)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_each_bucket_keeps_its_minimum_maximum_and_last_point(case: Case) -> None:
    check_buckets(case)


@pytest.mark.parametrize("seed", range(6))
def test_long_blocks_keep_the_same_points(seed: int) -> None:
    """Blocks of thousands of points a bucket (reduced one bucket at a time), one bucket of
    them all NaN in every other case."""
    rng = random.Random(seed)
    n = 9_000
    values = [math.nan, 0.0, -0.0, 1.0, math.inf, -math.inf]
    points = []
    for i in range(n):
        step = rng.randint(0, 50)
        nan_bucket = seed % 2 == 0 and step < 17
        value = math.nan if nan_bucket else rng.choice([*values, rng.random()])
        points.append(Point(step, rng.randint(0, 3), value, i))
    check_buckets(Case(points, Grid(0, 50, 3), [0, 4_000, n], set(range(0, n, 7))))


@settings(max_examples=400, deadline=None)
@given(cases(), st.sampled_from([1, 2, 3]))
def test_the_view_is_every_chosen_point_once_sorted(case: Case, few: int) -> None:
    """With room for three points a bucket, the view is every chosen point once, sorted by
    (step, timestamp, series order); one bucket and fewer points give the last point (1) or
    the extremes (2, the last in place of a coinciding maximum)."""
    want = oracle(case)
    buckets = sorted(want.lasts)
    chosen = [want.mins.get(b) for b in buckets] + [want.maxs.get(b) for b in buckets]
    chosen += [want.lasts[b] for b in buckets]
    max_points = 3 * case.grid.buckets
    if case.grid.buckets == 1 and few < 3:
        max_points = few
        chosen = [want.lasts[b] for b in buckets] if few == 1 else chosen
    once = list({p.order: p for p in chosen if p is not None}.values())[:max_points]
    once.sort(key=lambda p: (p.step, p.stamp, p.order))
    expected = [(p.step, p.stamp, repr(p.value), p.rank) for p in once]
    assert as_tuples(scanned(case).points(max_points)) == expected


def test_empty_and_single_points() -> None:
    none = Case([], Grid(0, 0, 3), [0], set())
    assert as_tuples(scanned(none).points(9)) == []
    for value in (math.nan, math.inf, -0.0):
        for step in (int(I64.min), 0, int(I64.max)):
            one = Case([Point(step, 7, value, 0)], Grid(step, step, 2), [0, 1], set())
            assert as_tuples(scanned(one).points(6)) == [(step, 7, repr(value), 0)]
