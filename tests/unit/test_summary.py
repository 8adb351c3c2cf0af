"""Chunk summaries (metrics/summary.py) against a brute-force reading of the same points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trackline_server.metrics import summary

BLOCK = summary.BLOCK


def brute_force(
    steps: list[int], stamps: list[int], values: list[float]
) -> list[tuple[int, int | None, int | None, int]]:
    """Per block: (first step, position of the min, of the max, of the last point). The
    points are sorted by (step, timestamp, arrival); min and max ignore NaN, and among equal
    values take the first in that order."""
    order = sorted(range(len(steps)), key=lambda i: (steps[i], stamps[i], i))
    out = []
    for a in range(0, len(order), BLOCK):
        block = order[a : a + BLOCK]
        finite = [i for i in block if not math.isnan(values[i])]
        # min and max return the first of equal elements
        lo = min(finite, key=lambda i: values[i]) if finite else None
        hi = max(finite, key=lambda i: values[i]) if finite else None
        out.append((steps[block[0]], lo, hi, block[-1]))
    return out


def check(steps: list[int], stamps: list[int], values: list[float]) -> summary.Summary:
    blob = summary.summarize(
        np.array(steps, np.int64), np.array(stamps, np.int64), np.array(values, np.float64)
    )
    assert blob is not None
    got = summary.decode(blob)
    expected = brute_force(steps, stamps, values)
    assert len(got) == len(expected) == -(-len(steps) // BLOCK)
    for b, (first, lo, hi, last) in enumerate(expected):
        assert got.first[b] == first
        for picked, want in ((got.mins, lo), (got.maxs, hi), (got.lasts, last)):
            if want is None:
                assert picked.pos[b] == -1
                continue
            assert picked.pos[b] == want
            assert (picked.steps[b], picked.stamps[b]) == (steps[want], stamps[want])
            v = picked.values[b]
            assert v == values[want] or (math.isnan(v) and math.isnan(values[want]))
    return got


def test_sorted_points_with_a_partial_last_block() -> None:
    rng = np.random.default_rng(1)
    n = summary.MIN_POINTS + 700
    values = rng.random(n).tolist()
    values[5] = math.inf
    values[6] = -math.inf
    values[BLOCK + 3] = math.nan
    got = check(list(range(n)), [1] * n, values)
    assert got.maxs.values[0] == math.inf and got.mins.values[0] == -math.inf


def test_unsorted_steps_ties_and_nan() -> None:
    rng = np.random.default_rng(2)
    n = 3 * summary.MIN_POINTS + 1
    steps = rng.integers(0, n // 4, n).tolist()  # many equal steps, in no order
    stamps = rng.integers(0, 3, n).tolist()  # and equal timestamps among them
    values = rng.integers(0, 50, n).astype(float).tolist()  # equal values: the first wins
    for i in rng.integers(0, n, n // 10).tolist():
        values[i] = math.nan
    values[0] = -0.0
    check(steps, stamps, values)


def test_all_nan_block_keeps_only_its_last_point() -> None:
    n = summary.MIN_POINTS
    values = [float(i) for i in range(n)]
    values[BLOCK : 2 * BLOCK] = [math.nan] * BLOCK
    got = check(list(range(n)), list(range(n)), values)
    assert got.mins.pos[1] == got.maxs.pos[1] == -1
    assert got.lasts.pos[1] == 2 * BLOCK - 1 and math.isnan(got.lasts.values[1])


def test_small_chunks_get_no_summary_and_bad_blobs_are_refused() -> None:
    n = summary.MIN_POINTS - 1
    cols = np.arange(n, dtype=np.int64), np.zeros(n, np.int64), np.zeros(n)
    assert summary.summarize(*cols) is None
    blob = summary.summarize(*(np.arange(summary.MIN_POINTS, dtype=t) for t in ("i8", "i8", "f8")))
    assert blob is not None
    with pytest.raises(ValueError):
        summary.decode(blob[:-1])
    with pytest.raises(ValueError):
        summary.decode(b"\x09" + blob[1:])
