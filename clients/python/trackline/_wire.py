"""The bytes of the metric stream's messages, written by the sender itself.

A batch goes out as a StreamMetricsRequest of two fields: its ``seq`` (a varint) and its
``block`` (a SeriesBlock): the series' names and lengths through protobuf, then the points'
columns as packed little-endian bytes, copied as they are. Field numbers and wire types are
taken from the generated descriptors and checked when this module is imported, so that a
changed proto fails here rather than on the server. Only the fields the sender writes are
looked up.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from trackline.v1 import ingest_pb2 as ipb

_VARINT, _LENGTH_DELIMITED = 0, 2  # protobuf wire types
_VARINT_TYPES = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_INT64}
_LENGTH_TYPES = {FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING}
# The point columns: each a packed repeated field of 8-byte values, as ``struct`` packs them.
COLUMNS = (("steps", "q"), ("timestamps", "q"), ("values", "d"))
_COLUMN_TYPES = {"q": FieldDescriptor.TYPE_SFIXED64, "d": FieldDescriptor.TYPE_DOUBLE}


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: Any) -> bytes:
    """The tag of ``field`` (a FieldDescriptor), for the field types the sender writes."""
    if field.is_packed or (field.type in _LENGTH_TYPES and not field.is_repeated):
        wire_type = _LENGTH_DELIMITED
    elif field.type in _VARINT_TYPES and not field.is_repeated:
        wire_type = _VARINT
    else:
        raise TypeError(f"the metric sender cannot write {field.full_name} (type {field.type})")
    return varint(field.number << 3 | wire_type)


def _column_tag(name: str, typecode: str) -> bytes:
    field = ipb.SeriesBlock.DESCRIPTOR.fields_by_name[name]
    if field.type != _COLUMN_TYPES[typecode]:
        raise TypeError(f"{field.full_name} is no longer the column the metric sender packs")
    return _tag(field)


_REQUEST = ipb.StreamMetricsRequest.DESCRIPTOR.fields_by_name
SEQ_TAG = _tag(_REQUEST["seq"])
BLOCK_TAG = _tag(_REQUEST["block"])
COLUMN_TAGS = tuple(_column_tag(name, typecode) for name, typecode in COLUMNS)


def encode_hello(writer_id: str, writer_key: bytes) -> bytes:
    """The first message of a stream: the writer's id and key, seq 0."""
    return ipb.StreamMetricsRequest(writer_id=writer_id, writer_key=writer_key).SerializeToString()


def encode_request(seq: int, block_field: bytes) -> bytes:
    """A StreamMetricsRequest from its seq and its encoded ``block`` field."""
    return SEQ_TAG + varint(seq) + block_field


def block_field_of(msg: bytes) -> bytes:
    """The ``block`` field of an ``encode_request`` message (what follows its seq)."""
    pos = len(SEQ_TAG)
    while msg[pos] & 0x80:
        pos += 1
    return msg[pos + 1 :]


def packed(typecode: str, column: Sequence[Any]) -> memoryview:
    """A packed little-endian column of int64 (``q``) or double (``d``) (raises struct.error
    for a value that is no int64). ``struct`` converts faster than ``array``."""
    return memoryview(struct.pack(f"<{len(column)}{typecode}", *column))


def packed_columns(columns: Sequence[Sequence[Any]]) -> tuple[memoryview, ...]:
    """The steps, timestamps and values columns, packed (``packed``)."""
    return tuple(packed(code, c) for (_, code), c in zip(COLUMNS, columns, strict=True))


def encode_block(
    run_id: str,
    keys: list[str],
    ranks: list[int],
    lengths: list[int],
    lo: int,
    hi: int,
    columns: tuple[memoryview, ...],
) -> bytes:
    """The ``block`` field of a StreamMetricsRequest: the series' names and lengths through
    protobuf (one ``extend`` per column), then points ``lo`` to ``hi`` of the packed
    ``columns`` (steps, timestamps, values) as they are (protobuf reads the fields in any
    order)."""
    names = ipb.SeriesBlock()
    names.run_ids.extend([run_id] * len(keys))
    names.keys.extend(keys)
    if any(ranks):
        names.ranks.extend(ranks)
    names.lengths.extend(lengths)
    head = names.SerializeToString()
    parts: list[bytes | memoryview] = [b"", head]
    size = len(head)
    for tag, column in zip(COLUMN_TAGS, columns, strict=True):
        piece = column[8 * lo : 8 * hi]
        field = tag + varint(len(piece))
        parts += (field, piece)
        size += len(field) + len(piece)
    parts[0] = BLOCK_TAG + varint(size)
    return b"".join(parts)
