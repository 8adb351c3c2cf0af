"""Packing of metric columns into chunk blobs (little-endian int64/float64, NaN/Inf exact)."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence


def pack_ints(values: Sequence[int]) -> bytes:
    arr = array("q", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def pack_floats(values: Sequence[float]) -> bytes:
    arr = array("d", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def unpack_ints(blob: bytes) -> array[int]:
    arr = array("q")
    arr.frombytes(blob)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr


def unpack_floats(blob: bytes) -> array[float]:
    arr = array("d")
    arr.frombytes(blob)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr
