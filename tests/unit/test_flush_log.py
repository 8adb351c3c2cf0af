"""The metric log's row format (metrics/flush_log.py): every Segments round-trips exactly,
whatever its steps and timestamps, and rows of the older version 1 still decode."""

from __future__ import annotations

import numpy as np
import pytest
from trackline_server.metrics import flush_log, segments

I64 = np.iinfo(np.int64)


def make(steps: list[int] | np.ndarray, stamps: list[int] | np.ndarray) -> segments.Segments:
    """Two series of one run with these points, split in three segments."""
    n = len(steps)
    assert n >= 3
    values = np.linspace(-1.0, 1.0, n)
    values[0], values[-1] = np.nan, np.inf
    return segments.Segments(
        series=[("run-a", "loss", 0), ("run-a", "accuracy/ü", 7)],
        seg_series=np.array([0, 1, 0], np.int64),
        lengths=np.array([1, n - 2, 1], np.int64),
        steps=np.asarray(steps, np.int64),
        stamps=np.asarray(stamps, np.int64),
        values=values,
    )


def assert_same(got: segments.Segments, want: segments.Segments) -> None:
    assert got.series == want.series
    for column in ("seg_series", "lengths", "steps", "stamps"):
        np.testing.assert_array_equal(getattr(got, column), getattr(want, column))
    np.testing.assert_array_equal(got.values, want.values)  # NaN equals NaN here


RNG = np.random.default_rng(7)
CASES = {
    "consecutive steps, one timestamp": (np.arange(1000), np.full(1000, 1_700_000_000_000)),
    "int16 differences": (np.arange(0, 300 * 1000, 300), np.arange(1000) * 20_000),
    "int32 differences": (np.arange(0, 70_000 * 1000, 70_000), np.arange(1000) * 2_000_000),
    "int64 differences": (np.arange(1000) * 5_000_000_000, -np.arange(1000) * 5_000_000_000),
    "differences that overflow": ([I64.max, I64.min, 0, I64.max, -1], [0, I64.min, I64.max, 1, 2]),
    "random int64": (RNG.integers(I64.min, I64.max, 999), RNG.integers(I64.min, I64.max, 999)),
    "three points": ([5, 5, 5], [1, 2, 3]),
}


@pytest.mark.parametrize("steps, stamps", CASES.values(), ids=list(CASES))
def test_rows_round_trip_exactly(steps: np.ndarray, stamps: np.ndarray) -> None:
    segs = make(steps, stamps)
    assert_same(flush_log.decode(flush_log.encode(segs)), segs)


def test_close_steps_and_timestamps_take_a_byte_each() -> None:
    n = 100_000
    segs = segments.Segments(
        [("r", "k", 0)], np.zeros(1, np.int64), np.array([n], np.int64),
        np.tile(np.arange(10), n // 10), np.full(n, 1_700_000_000_000), np.zeros(n),
    )  # fmt: skip
    assert len(flush_log.encode(segs)) < 10.1 * n  # 8 for the value, 1 + 1 for the rest


def encode_version_1(segs: segments.Segments) -> bytes:
    """A row as servers before version 2 wrote it: raw int64 steps and timestamps."""
    i8 = np.dtype("<i8")
    names = "\x00".join([s[0] for s in segs.series] + [s[1] for s in segs.series]).encode()
    return b"".join((
        b"TLLOG\x00\x00\x01",
        np.array([len(segs.series), len(segs.lengths), segs.points], i8).tobytes(),
        np.array([s[2] for s in segs.series], i8).tobytes(),
        segs.seg_series.astype(i8).tobytes(),
        segs.lengths.astype(i8).tobytes(),
        segs.steps.astype(i8).tobytes(),
        segs.stamps.astype(i8).tobytes(),
        segs.values.astype("<f8").tobytes(),
        names,
    ))  # fmt: skip


def test_version_1_rows_still_decode() -> None:
    segs = make(*CASES["random int64"])
    assert_same(flush_log.decode(encode_version_1(segs)), segs)


@pytest.mark.parametrize(
    "body", [b"", b"TLLOG\x00\x00\x03" + bytes(24), b"NOTALOG!" + bytes(24)], ids=str
)
def test_other_bytes_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        flush_log.decode(body)


def test_a_bad_column_width_is_refused() -> None:
    body = bytearray(flush_log.encode(make(*CASES["three points"])))
    # The steps column's width follows the header, counts, ranks, seg_series and lengths.
    at = 8 + 24 + 8 * 2 + 8 * 3 + 8 * 3
    assert int.from_bytes(body[at : at + 8], "little") == 1
    body[at : at + 8] = (3).to_bytes(8, "little")
    with pytest.raises(ValueError, match="width 3"):
        flush_log.decode(bytes(body))
