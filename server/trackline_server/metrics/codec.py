"""Byte formats of points, pure (no database): protobuf varints, one at a time and a column
at a time, and the blob of a stored chunk.

A chunk blob holds the points of one chunk row (``chunks.py``) as the protobuf wire form of a
``RankedSeries`` (ingest.proto) carrying only fields 4 (steps, sfixed64), 5 (timestamps,
sfixed64) and 6 (values, double). Blobs written now put 8 bytes before each column (a padding
field 15, then the column's tag and length), so every column starts 8-aligned and readers get
aligned numpy views without copying (``chunk_columns``). Older blobs may hold several
concatenated packed runs per column (the protobuf rule for repeated fields makes that the
columns appended); ``chunk_columns`` reads both. The message's field numbers are frozen by
``buf breaking``, which freezes this format with them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_STEPS, _TIMESTAMPS, _VALUES = 4, 5, 6
_PAD = 15  # an unknown field whose bytes align the next column to 8 bytes
_LEN, _I64 = 2, 1  # wire types: length-delimited (packed), 64-bit (unpacked element)


# Varints


def encode_varint(value: int) -> bytes:
    """The protobuf varint of one int64 (as two's complement: a negative one takes 10
    bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(view: memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` of ``view`` (unsigned) and the position after it."""
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def encode_varints(values: Ints) -> bytes:
    """Protobuf varints of int64 values, concatenated: the payload of a packed repeated
    integer field. Fast when the values share one varint width (ranks, timestamps) or ascend
    (steps): then each run of one width is a matrix of bytes with no gaps."""
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


def packed_field(number: int, payload: bytes) -> bytes:
    """A packed repeated field: tag, length, payload; nothing for an empty payload (an empty
    repeated field is absent from the wire)."""
    if not payload:
        return b""
    return encode_varint(number << 3 | _LEN) + encode_varint(len(payload)) + payload


# Chunk blobs


def chunk_blobs(steps: Ints, stamps: Ints, values: Floats, bounds: list[int]) -> list[bytes]:
    """The blobs of consecutive chunks cut from shared columns: chunk i holds the points
    ``bounds[i]`` to ``bounds[i + 1]``. Each blob is built with one copy of its points."""
    step_bytes, stamp_bytes, value_bytes = (memoryview(np.ascontiguousarray(a).view(np.uint8))  # type: ignore[arg-type]
                                            for a in (steps, stamps, values))  # fmt: skip
    blobs = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        h_steps, h_stamps, h_values = _headers(b - a)
        blobs.append(b"".join((h_steps, step_bytes[8 * a : 8 * b], h_stamps,
                               stamp_bytes[8 * a : 8 * b], h_values,
                               value_bytes[8 * a : 8 * b])))  # fmt: skip
    return blobs


@functools.lru_cache(maxsize=4096)
def _headers(n: int) -> tuple[bytes, bytes, bytes]:
    """The 8 bytes before each column of an ``n``-point blob: a padding field, then the
    column's tag and length. Every column then starts 8-aligned in the blob (and in memory:
    CPython keeps a bytes object's data 8-aligned), so readers get aligned numpy views."""
    out = []
    for field in (_STEPS, _TIMESTAMPS, _VALUES):
        col = bytes([field << 3 | _LEN]) + encode_varint(8 * n)
        pad = 6 - len(col)
        out.append(bytes([_PAD << 3 | _LEN, pad]) + bytes(pad) + col)
    return out[0], out[1], out[2]


def chunk_columns(blob: bytes) -> tuple[Ints, Ints, Floats]:
    """Decodes a chunk blob into (steps, timestamps, values) arrays; views into ``blob`` when
    each column is one packed run, copies when parts were concatenated."""
    found: dict[int, list[npt.NDArray[Any]]] = {_STEPS: [], _TIMESTAMPS: [], _VALUES: []}
    view = memoryview(blob)
    pos, end = 0, len(blob)
    while pos < end:
        tag, pos = decode_varint(view, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN:
            size, pos = decode_varint(view, pos)
            if field in found:
                dtype = "<f8" if field == _VALUES else "<i8"
                found[field].append(np.frombuffer(blob, dtype, size // 8, pos))
            pos += size
        elif wire == _I64:
            if field in found:
                dtype = "<f8" if field == _VALUES else "<i8"
                found[field].append(np.frombuffer(blob, dtype, 1, pos))
            pos += 8
        else:
            raise ValueError(f"unexpected wire type {wire} in a metric chunk")

    def join(parts: list[npt.NDArray[Any]], dtype: str) -> npt.NDArray[Any]:
        if not parts:
            return np.empty(0, dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    steps = join(found[_STEPS], "<i8")
    stamps = join(found[_TIMESTAMPS], "<i8")
    values = join(found[_VALUES], "<f8")
    return (
        steps.astype(np.int64, copy=False),
        stamps.astype(np.int64, copy=False),
        values.astype(np.float64, copy=False),
    )
