"""Protobuf encoding of point columns into responses: packed repeated fields built with numpy
(``codec.encode_varints``) and parsed in one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message
from trackline.v1 import resources_pb2 as pb

from .chunk_points import Points
from .codec import encode_varints, packed_field


def fill_series(series: pb.MetricSeries, key: str, points: Points) -> None:
    """Sets a MetricSeries to the columns: encoded with numpy and parsed in one call, several
    times faster than ``extend`` even from lists."""
    series.key = key
    if not len(points.steps):
        return
    fields = series.DESCRIPTOR.fields_by_name
    series.MergeFromString(b"".join((
        packed_field(fields["steps"].number, encode_varints(points.steps)),
        packed_field(fields["timestamps"].number, encode_varints(points.timestamps)),
        packed_field(fields["values"].number,
                     np.ascontiguousarray(points.values, "<f8").tobytes()),
    )))  # fmt: skip


def extend_ints(message: Message, field: str, values: npt.NDArray[np.integer[Any]]) -> None:
    """Appends ``values`` to a packed repeated integer field (as ``fill_series`` does)."""
    if len(values):
        data = encode_varints(values.astype(np.int64, copy=False))
        message.MergeFromString(packed_field(message.DESCRIPTOR.fields_by_name[field].number, data))
