"""The metric log: what a flush commits, as one row however many series it holds.

One stored row per series per flush would cap small-batch ingestion at the database's row
rate. A flush instead appends its points to ``metric_log`` as one row, and the compactor
(``compactor.py``) later moves many log rows at once into per-series chunks, so that a
series gets one chunk row per compaction instead of one per flush.

A log row's ``body`` holds a ``Segments`` (see ``segments.py``) in this layout, all
integers little-endian and every column 8-aligned:

    header      8 bytes: b"TLLOG", 0, 0, version 1
    counts      int64 series, int64 segments, int64 points
    ranks       int64[series]
    seg_series  int64[segments]
    lengths     int64[segments]
    steps       int64[points]
    stamps      int64[points]
    values      float64[points]
    names       UTF-8: the series' run ids, then their keys, joined by NUL (neither can
                contain NUL: keys refuse control characters, and run ids were matched to
                stored runs)

It is an internal, short-lived format: rows live until the next compaction (about a second)
and are written and read only by this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..models import metric_log
from .segments import Segments

_MAGIC = b"TLLOG\x00\x00\x01"
_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")


def encode(segs: Segments) -> bytes:
    names = "\x00".join([s[0] for s in segs.series] + [s[1] for s in segs.series]).encode()
    return b"".join(
        (
            _MAGIC,
            np.array([len(segs.series), len(segs.lengths), segs.points], _I8).tobytes(),
            np.array([s[2] for s in segs.series], _I8).tobytes(),
            segs.seg_series.astype(_I8, copy=False).tobytes(),
            segs.lengths.astype(_I8, copy=False).tobytes(),
            segs.steps.astype(_I8, copy=False).tobytes(),
            segs.stamps.astype(_I8, copy=False).tobytes(),
            segs.values.astype(_F8, copy=False).tobytes(),
            names,
        )
    )


def decode(body: bytes) -> Segments:
    if body[:8] != _MAGIC:
        raise ValueError("not a metric log record of version 1")
    nser, nseg, npts = (int(x) for x in np.frombuffer(body, _I8, 3, 8))
    pos = 32

    def take(dtype: np.dtype[Any], n: int) -> npt.NDArray[Any]:
        nonlocal pos
        arr = np.frombuffer(body, dtype, n, pos)
        pos += 8 * n
        return arr

    ranks = take(_I8, nser).tolist()
    seg_series = take(_I8, nseg).astype(np.int64, copy=False)
    lengths = take(_I8, nseg).astype(np.int64, copy=False)
    steps = take(_I8, npts).astype(np.int64, copy=False)
    stamps = take(_I8, npts).astype(np.int64, copy=False)
    values = take(_F8, npts).astype(np.float64, copy=False)
    names = body[pos:].decode().split("\x00") if nser else []
    if len(names) != 2 * nser:
        raise ValueError("a metric log record's names do not match its series count")
    series = list(zip(names[:nser], names[nser:], ranks, strict=True))
    return Segments(series, seg_series, lengths, steps, stamps, values)


async def append(conn: AsyncConnection, segs: Segments) -> None:
    """Adds ``segs`` to the log in the caller's transaction (nothing when it is empty)."""
    if len(segs.lengths):
        await conn.execute(insert(metric_log).values(points=segs.points, body=encode(segs)))
