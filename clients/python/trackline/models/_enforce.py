"""``predict``'s input checked against a model's signature, as MLflow checks it: columns
taken by name and put in the signature's order (extra ones dropped), each column's type
checked, widened where no value changes (int -> double, float32 -> double, ...), tensors'
shapes and dtypes checked. A mismatch is a SchemaError naming the column."""

from __future__ import annotations

import warnings
from typing import Any

from ._infer import _is_ndarray, _is_series, _rows, is_dataframe
from ._schema import COLUMN_TYPES, ColSpec, ParamSchema, Schema, TensorSpec


class SchemaError(ValueError):
    """The input does not fit the model's signature; ``column`` names the column, tensor
    or parameter at fault (None when the input as a whole is at fault)."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


def enforce_schema(data: Any, schema: Schema) -> Any:
    """``data`` as the model is to get it: a DataFrame for a column schema, an array (or a
    dict of arrays for named tensors) for a tensor schema."""
    if schema.is_tensor:
        return _enforce_tensors(data, schema)
    return _enforce_columns(data, schema)


def _frame(data: Any, schema: Schema) -> Any:
    import pandas as pd

    if is_dataframe(data):
        return data
    if _is_series(data):
        return data.to_frame()
    if _is_ndarray(data):
        if data.ndim == 1:
            data = data.reshape(-1, 1) if len(schema.specs) == 1 else data.reshape(1, -1)
        if data.ndim != 2:
            raise SchemaError(f"a {data.ndim}-D array does not fit a column signature")
        names = schema.names() if schema.has_names else None
        if names is not None and data.shape[1] != len(names):
            raise SchemaError(
                f"the array has {data.shape[1]} columns; the signature has {len(names)}:"
                f" {', '.join(names)}"
            )
        return pd.DataFrame(data, columns=names)
    if isinstance(data, dict):
        return pd.DataFrame(_rows(data))
    if isinstance(data, list):
        return pd.DataFrame(data)
    raise SchemaError(
        f"cannot check a {type(data).__name__} against a column signature: give a pandas"
        " DataFrame, a dict of columns or a list of rows"
    )


def _enforce_columns(data: Any, schema: Schema) -> Any:
    import pandas as pd

    frame = _frame(data, schema)
    if not schema.has_names:
        if frame.shape[1] < len(schema.specs):
            raise SchemaError(
                f"the input has {frame.shape[1]} columns; the signature wants {len(schema.specs)}"
            )
        checked = [
            _column(f"#{i}", frame.iloc[:, i], spec.type)
            for i, spec in enumerate(schema.specs)
            if isinstance(spec, ColSpec)
        ]
        return pd.concat(checked, axis=1)
    columns = {}
    for spec in schema.specs:
        assert isinstance(spec, ColSpec) and spec.name is not None
        if spec.name not in frame.columns:
            if spec.required:
                raise SchemaError(
                    f"the input lacks column {spec.name!r} ({_type_name(spec.type)}), which"
                    " the model's signature requires",
                    spec.name,
                )
            continue
        columns[spec.name] = _column(spec.name, frame[spec.name], spec.type)
    return pd.DataFrame(columns, index=frame.index)


def _type_name(kind: str | dict[str, Any]) -> str:
    return kind if isinstance(kind, str) else str(kind.get("type"))


def _column(name: str, values: Any, kind: str | dict[str, Any]) -> Any:
    """``values`` as a column of type ``kind``; SchemaError when they cannot be without
    changing a value."""
    import numpy as np

    if not isinstance(kind, str):
        return values  # a composite type from another tool: checked for presence only
    dtype = values.dtype
    if dtype.kind == "O" and kind not in ("string", "binary"):
        values = values.infer_objects()
        dtype = values.dtype
    text_like = dtype.kind in "OUS" or str(dtype) in ("str", "string")
    if kind in ("string", "binary") and text_like:
        return values
    if kind == "boolean" and dtype.kind == "O":
        return values
    target = np.dtype(COLUMN_TYPES[kind])
    if dtype == target:
        return values
    if kind == "datetime" and dtype.kind in "MO":
        try:
            return values.astype(target)
        except (TypeError, ValueError) as e:
            raise SchemaError(f"column {name!r} does not hold datetimes: {e}", name) from e
    if dtype.kind in "iuf" and target.kind in "iuf" and _widens(dtype, target, values):
        return values.astype(target)
    numeric = dtype.kind in "iuf" and target.kind in "iuf"
    raise SchemaError(
        f"column {name!r} is {dtype}; the model's signature wants {kind} ({target})"
        + (f", and {dtype} -> {target} would change values" if numeric else ""),
        name,
    )


def _widens(dtype: Any, target: Any, values: Any) -> bool:
    """Whether ``values`` of ``dtype`` become ``target`` without changing a value: always for
    a wider type of the same kind or int -> a float wide enough, else when every value
    round-trips (int64 -> double below 2**53)."""
    import numpy as np

    if dtype.kind in "iu" and target.kind == "f":
        if dtype.itemsize < target.itemsize:  # int32 -> double: every value fits
            return True
    elif np.can_cast(dtype, target, casting="safe"):
        return True
    if target.kind != "f" or dtype.kind not in "iu":
        return False
    converted = values.astype(target)
    return bool((converted.astype(dtype) == values).all())


def _enforce_tensors(data: Any, schema: Schema) -> Any:
    import numpy as np

    specs = [s for s in schema.specs if isinstance(s, TensorSpec)]
    if schema.has_names:
        if is_dataframe(data):
            data = {c: data[c].to_numpy() for c in data.columns}
        if not isinstance(data, dict):
            raise SchemaError(
                "the model's signature has named tensors"
                f" ({', '.join(schema.names())}): give a dict of arrays"
            )
        out = {}
        for spec in specs:
            assert spec.name is not None
            if spec.name not in data:
                raise SchemaError(f"the input lacks tensor {spec.name!r}", spec.name)
            out[spec.name] = _tensor(spec.name, np.asarray(data[spec.name]), spec)
        return out
    if is_dataframe(data):
        data = data.to_numpy()
    return _tensor("input", np.asarray(data), specs[0])


def _tensor(name: str, values: Any, spec: TensorSpec) -> Any:
    import numpy as np

    shape = values.shape
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise SchemaError(
            f"tensor {name!r} has shape {shape}; the model's signature wants {spec.shape}"
            " (-1: any size)",
            name,
        )
    got = "str" if values.dtype.kind == "U" else "bytes" if values.dtype.kind == "S" else None
    if got is not None or spec.dtype in ("str", "bytes", "object"):
        if (got or values.dtype.name) == spec.dtype or spec.dtype == "object":
            return values
    elif values.dtype == np.dtype(spec.dtype):
        return values
    elif np.can_cast(values.dtype, np.dtype(spec.dtype), casting="safe"):
        return values.astype(spec.dtype)
    raise SchemaError(
        f"tensor {name!r} is {got or values.dtype}; the model's signature wants {spec.dtype}",
        name,
    )


def enforce_params(params: dict[str, Any] | None, schema: ParamSchema | None) -> dict[str, Any]:
    """The parameters ``predict`` passes on: those given, checked, with the schema's
    defaults for the others. Parameters the schema does not name are dropped with a warning,
    as MLflow drops them."""
    given = dict(params or {})
    if schema is None:
        if given:
            warnings.warn(
                f"the model's signature declares no parameters; ignoring {sorted(given)}",
                stacklevel=3,
            )
        return {}
    known = {p.name for p in schema.params}
    unknown = sorted(set(given) - known)
    if unknown:
        warnings.warn(
            f"the model's signature does not declare {unknown}; ignoring them", stacklevel=3
        )
    out = {}
    for spec in schema.params:
        value = given.get(spec.name, spec.default)
        values = value if spec.shape is not None and isinstance(value, list) else [value]
        if spec.shape is not None and not isinstance(value, list):
            raise SchemaError(f"parameter {spec.name!r} is a list of {spec.type}", spec.name)
        for v in values:
            if v is not None and not _param_fits(v, spec.type):
                raise SchemaError(
                    f"parameter {spec.name!r} is {spec.type}, not {type(v).__name__}", spec.name
                )
        out[spec.name] = value
    return out


def _param_fits(value: Any, kind: str) -> bool:
    import datetime as dt

    if kind in ("long", "integer"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("double", "float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"boolean": bool, "string": str, "binary": bytes, "datetime": dt.datetime}
    return isinstance(value, expected.get(kind, object))
