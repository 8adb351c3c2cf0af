"""Datasets to log as the inputs of runs (``trackline.log_input``, like ``mlflow.data``).

``from_pandas(df, source)`` and ``from_numpy(features, source)`` describe data in memory: a
name, a digest computed from the content, where it came from, its schema (column names and
dtypes, as JSON) and a profile (``{"num_rows", "num_elements"}``, as JSON). Any other data can
be described by building a ``Dataset`` directly. pandas and numpy are imported only when a
function needs them; trackline does not depend on them.

The digest (16 hex digits of BLAKE2b) covers the schema, the shape and the bytes of the data;
for large data, as MLflow does, only a sample of it: at most ``MAX_SAMPLE`` rows of a frame
(or elements of an array), evenly spaced from the first to the last, so digesting costs the
same for a billion rows as for ten thousand. The same data gives the same digest in every
process; a change to the schema, to the number of rows or to a sampled value gives another,
while a change to a value outside the sample goes unnoticed. A frame's dtypes are part of
its schema, so a frame read by pandas 2 and by pandas 3 (whose strings have dtype ``str``,
not ``object``) digests differently.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trackline.v1 import resources_pb2 as pb

if TYPE_CHECKING:
    import numpy

MAX_SAMPLE = 10_000
DEFAULT_NAME = "dataset"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# URI schemes named by another source type (MLflow's names).
_SOURCE_TYPES = {"file": "local", "https": "http"}


@dataclass(frozen=True)
class Dataset:
    """A dataset as the server stores it (``trackline.v1.Dataset``): stored once per
    experiment by (``name``, ``digest``). ``schema`` and ``profile`` are JSON text (empty:
    none); ``source_type`` is the kind of place ``source`` names ("local", "s3", "http",
    ...)."""

    name: str
    digest: str
    source: str
    source_type: str = ""
    schema: str = ""
    profile: str = ""

    def to_proto(self) -> pb.Dataset:
        return pb.Dataset(
            name=self.name,
            digest=self.digest,
            source_type=self.source_type,
            source=self.source,
            schema=self.schema,
            profile=self.profile,
        )

    def to_input(
        self, context: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> pb.DatasetInput:
        """The dataset as an input of a run, used for ``context`` ("training", "eval", ...),
        with ``tags`` (values as ``str``)."""
        return pb.DatasetInput(
            dataset=self.to_proto(),
            context=context or "",
            tags=[pb.InputTag(key=k, value=str(v)) for k, v in (tags or {}).items()],
        )


def source_type(source: str) -> str:
    """The source type of a path or URI: the URI's scheme ("s3://b/k" -> "s3"; "file" is
    "local", "https" is "http"), "local" for a path, "" for no source."""
    if not source:
        return ""
    found = _SCHEME.match(source)
    if found is None:
        return "local"
    scheme = found.group(1).lower()
    return _SOURCE_TYPES.get(scheme, scheme)


def from_pandas(
    df: Any, source: str, name: str | None = None, targets: str | None = None
) -> Dataset:
    """Describes ``df``, a pandas DataFrame read from ``source`` (a path or URI). ``targets`` names
    the column holding the labels (ValueError when the frame has none by that name); it is
    recorded in the schema as ``"targets"``. The schema lists every column's name (as
    ``str``) and dtype."""
    pd = _require("pandas", "from_pandas")
    np = _require("numpy", "from_pandas")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_pandas takes a pandas DataFrame, not {type(df).__name__}")
    if targets is not None and targets not in df.columns:
        raise ValueError(f"targets names no column of the frame: {targets!r}")
    described: dict[str, Any] = {
        "columns": [{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()]
    }
    if targets is not None:
        described["targets"] = targets
    schema = _as_json(described)
    digest = _digest(schema, [len(df), *df.shape], _frame_bytes(pd, np, df))
    profile = _as_json({"num_rows": len(df), "num_elements": int(df.size)})
    return Dataset(name or DEFAULT_NAME, digest, source, source_type(source), schema, profile)


def from_numpy(
    features: numpy.ndarray[Any, Any] | Any,
    source: str,
    name: str | None = None,
    targets: numpy.ndarray[Any, Any] | Any | None = None,
) -> Dataset:
    """Describes arrays read from ``source``: ``features`` and, when given, ``targets`` (each
    an array, or what ``numpy.asarray`` takes). The schema lists each array as a column with
    its dtype and its shape per row (``[-1, ...]``); num_rows is the features' first
    dimension, num_elements counts the elements of both."""
    np = _require("numpy", "from_numpy")
    arrays = {"features": np.asarray(features)}
    if targets is not None:
        arrays["targets"] = np.asarray(targets)
    columns = [
        {"name": n, "dtype": str(a.dtype), "shape": [-1, *a.shape[1:]] if a.ndim else []}
        for n, a in arrays.items()
    ]
    schema = _as_json({"columns": columns})
    shapes = [d for a in arrays.values() for d in (a.ndim, *a.shape)]
    sampled = [_array_bytes(np, a) for a in arrays.values()]
    digest = _digest(schema, shapes, *sampled)
    first = arrays["features"]
    profile = _as_json(
        {
            "num_rows": int(first.shape[0]) if first.ndim else 1,
            "num_elements": sum(int(a.size) for a in arrays.values()),
        }
    )
    return Dataset(name or DEFAULT_NAME, digest, source, source_type(source), schema, profile)


# What to install for a missing module (pandas: the client's extra).
_INSTALL = {"pandas": "'trackline[pandas]'", "numpy": "numpy"}


def _require(module: str, caller: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"trackline.data.{caller} needs {module}, which is not installed"
            f" (pip install {_INSTALL[module]})"
        ) from None


def _as_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _digest(schema: str, sizes: list[int], *parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(schema.encode())
    h.update(b"".join(int(n).to_bytes(8, "little", signed=True) for n in sizes))
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _positions(np: Any, n: int) -> Any:
    """At most MAX_SAMPLE positions out of ``n``, evenly spaced from the first to the last
    (every position when ``n`` is no larger)."""
    if n <= MAX_SAMPLE:
        return np.arange(n)
    return np.linspace(0, n - 1, MAX_SAMPLE).round().astype(np.int64)


def _frame_bytes(pd: Any, np: Any, df: Any) -> bytes:
    """pandas' hash of each sampled row (its index and values); columns of values pandas
    cannot hash (lists, dicts) hash as their ``str``."""
    sample = df.iloc[_positions(np, len(df))]
    try:
        hashed = pd.util.hash_pandas_object(sample)
    except TypeError:
        unhashable = {c: str for c, t in sample.dtypes.items() if t.kind == "O"}
        hashed = pd.util.hash_pandas_object(sample.astype(unhashable))
    return bytes(hashed.to_numpy().tobytes())


def _array_bytes(np: Any, array: Any) -> bytes:
    """The bytes of the sampled elements of ``array`` (in C order); elements that are Python
    objects as their ``repr``, since their bytes are addresses."""
    sample = array.flat[_positions(np, array.size)] if array.ndim else array.reshape(1)
    if array.dtype.hasobject:
        return "\x1f".join(map(repr, sample.tolist())).encode()
    return bytes(np.ascontiguousarray(sample).tobytes())


__all__ = ["DEFAULT_NAME", "MAX_SAMPLE", "Dataset", "from_numpy", "from_pandas", "source_type"]
