"""The metric log: what a flush commits, as one row however many series it holds.

One stored row per series per flush would cap small-batch ingestion at the database's row
rate. A flush instead appends its points to ``metric_log`` as one row, and the compactor
(``compactor.py``) later moves many log rows at once into per-series chunks, so that a
series gets one chunk row per compaction instead of one per flush.

A log row's ``body`` holds a ``Segments`` (see ``segments.py``) in this layout, all
integers little-endian and every part 8-aligned:

    header      8 bytes: b"TLLOG", 0, 0, version 2
    counts      int64 series, int64 segments, int64 points
    ranks       int64[series]
    seg_series  int64[segments]
    lengths     int64[segments]
    steps       a delta column (below)
    stamps      a delta column
    values      float64[points]
    names       UTF-8: the series' run ids, then their keys, joined by NUL (neither can
                contain NUL: keys refuse control characters, and run ids were matched to
                stored runs)

A delta column stores an int64 column of n values as int64 width and int64 first value,
then the n - 1 differences between neighbours as integers of ``width`` bytes (1, 2, 4 or 8:
the narrowest that holds them all), zero-padded to 8 bytes. Steps and timestamps of
neighbouring points are close, so they take a byte or two instead of eight: the row is
under half the size of version 1 (raw int64 columns), and every compaction reads, deletes
and checkpoints that much less. Differences that overflow wrap around and the running sum
wraps back, so every int64 column round-trips exactly.

It is an internal, short-lived format: rows live until the next compaction (about a second)
and are written and read only by this module. Version 1 rows (left by an older server) are
still read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert

from ..models import metric_log
from ..sql import Query, Writer, execute_many
from .segments import Segments

_MAGIC = b"TLLOG\x00\x00"
_VERSION = 2
_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")
_WIDTHS = (1, 2, 4)  # narrower than int64, in the order tried


def encode(segs: Segments) -> bytes:
    names = "\x00".join([s[0] for s in segs.series] + [s[1] for s in segs.series]).encode()
    return b"".join(
        (
            _MAGIC + bytes([_VERSION]),
            np.array([len(segs.series), len(segs.lengths), segs.points], _I8).tobytes(),
            np.array([s[2] for s in segs.series], _I8).tobytes(),
            segs.seg_series.astype(_I8, copy=False).tobytes(),
            segs.lengths.astype(_I8, copy=False).tobytes(),
            *_delta_column(segs.steps),
            *_delta_column(segs.stamps),
            segs.values.astype(_F8, copy=False).tobytes(),
            names,
        )
    )


def _delta_column(column: npt.NDArray[np.int64]) -> tuple[bytes, bytes, bytes]:
    """A delta column's header, differences and padding (see the module's docstring)."""
    if len(column) == 0:
        return np.array([8, 0], _I8).tobytes(), b"", b""
    deltas = np.diff(column)  # wraps around on overflow, as the decoder's sum does
    width = 8
    if len(deltas):
        lo, hi = int(deltas.min()), int(deltas.max())
        width = next((w for w in _WIDTHS if -(1 << 8 * w - 1) <= lo and hi < 1 << 8 * w - 1), 8)
    data = deltas.astype(f"<i{width}").tobytes()
    return np.array([width, column[0]], _I8).tobytes(), data, bytes(-len(data) % 8)


def decode(body: bytes) -> Segments:
    if body[:7] != _MAGIC or body[7] not in (1, _VERSION):
        raise ValueError("not a metric log record of version 1 or 2")
    nser, nseg, npts = (int(x) for x in np.frombuffer(body, _I8, 3, 8))
    pos = 32

    def take(dtype: np.dtype[Any], n: int) -> npt.NDArray[Any]:
        nonlocal pos
        arr = np.frombuffer(body, dtype, n, pos)
        pos += -(-(dtype.itemsize * n) // 8) * 8
        return arr

    def take_deltas() -> npt.NDArray[np.int64]:
        width, first = (int(x) for x in take(_I8, 2))
        if width not in (*_WIDTHS, 8):
            raise ValueError(f"a metric log record has a delta column of width {width}")
        out = np.empty(npts, np.int64)
        if npts:
            out[0] = first
            np.cumsum(take(np.dtype(f"<i{width}"), npts - 1), dtype=np.int64, out=out[1:])
            out[1:] += first
        return out

    version = body[7]
    ranks = take(_I8, nser).tolist()
    seg_series = take(_I8, nseg).astype(np.int64, copy=False)
    lengths = take(_I8, nseg).astype(np.int64, copy=False)
    if version == 1:
        steps = take(_I8, npts).astype(np.int64, copy=False)
        stamps = take(_I8, npts).astype(np.int64, copy=False)
    else:
        steps, stamps = take_deltas(), take_deltas()
    values = take(_F8, npts).astype(np.float64, copy=False)
    names = body[pos:].decode().split("\x00") if nser else []
    if len(names) != 2 * nser:
        raise ValueError("a metric log record's names do not match its series count")
    series = list(zip(names[:nser], names[nser:], ranks, strict=True))
    return Segments(series, seg_series, lengths, steps, stamps, values)


async def append(conn: Writer, points: int, body: bytes) -> None:
    """Adds a row (``encode``'s body of ``points`` points) in the caller's transaction."""
    await execute_many(conn, _APPEND, [{"points": points, "body": body}])


_APPEND = Query(lambda _: insert(metric_log))
