"""Signatures inferred from data, and input examples written and read as MLflow does
(``input_example.json``, ``serving_input_example.json``). numpy and pandas are imported when
a function runs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from typing import Any

from ._deps import require
from ._schema import COLUMN_TYPES, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

EXAMPLE_FILE = "input_example.json"
SERVING_EXAMPLE_FILE = "serving_input_example.json"


def _np() -> Any:
    return require("numpy", "numpy", extra="models")


def _pd() -> Any:
    return require("pandas", "pandas", extra="pandas")


def is_dataframe(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame, without importing pandas when it is not."""
    return type(data).__module__.startswith("pandas") and type(data).__name__ == "DataFrame"


def _is_series(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and type(data).__name__ == "Series"


def _is_ndarray(data: Any) -> bool:
    return type(data).__module__ == "numpy" and type(data).__name__ == "ndarray"


def column_type(dtype: Any, values: Any = None) -> str:
    """The column type of a numpy or pandas dtype; for an object column, of its first
    value. ValueError for a dtype with no column type (categorical, complex, ...)."""
    np = _np()
    name = str(dtype)
    if name in ("string", "str") or name.startswith("string["):
        return "string"
    if name.startswith("datetime64"):
        return "datetime"
    kind = getattr(dtype, "kind", None)
    if kind == "b":
        return "boolean"
    if kind in ("i", "u"):
        return "long" if np.dtype(dtype).itemsize > 4 or name == "uint32" else "integer"
    if kind == "f":
        return "double" if np.dtype(dtype).itemsize > 4 else "float"
    if kind == "U":
        return "string"
    if kind == "S":
        return "binary"
    if kind == "O" and values is not None:
        first = next((v for v in values if v is not None), None)
        for python_type, kind_name in ((bool, "boolean"), (str, "string"), (bytes, "binary")):
            if isinstance(first, python_type):
                return kind_name
        if isinstance(first, dt.datetime):
            return "datetime"
    raise ValueError(f"no column type for dtype {name}: use one of {', '.join(COLUMN_TYPES)}")


def _tensor_dtype(dtype: Any) -> str:
    kind = dtype.kind
    return "str" if kind == "U" else "bytes" if kind == "S" else str(dtype.name)


def infer_schema(data: Any) -> Schema:
    """The schema of a pandas DataFrame or Series (columns), a numpy array (one tensor, its
    first axis any size) or a dict of numpy arrays (named tensors); a dict of plain values
    or a list of dicts is taken as a DataFrame, another list as an array."""
    np = _np()
    if is_dataframe(data):
        return Schema(
            tuple(ColSpec(column_type(data[c].dtype, data[c]), str(c)) for c in data.columns)
        )
    if _is_series(data):
        return Schema((ColSpec(column_type(data.dtype, data)),))
    if _is_ndarray(data):
        return Schema((TensorSpec(_tensor_dtype(data.dtype), (-1, *data.shape[1:])),))
    if isinstance(data, dict) and data and all(_is_ndarray(v) for v in data.values()):
        return Schema(
            tuple(
                TensorSpec(_tensor_dtype(v.dtype), (-1, *v.shape[1:]), str(k))
                for k, v in data.items()
            )
        )
    if isinstance(data, dict) and data:
        return infer_schema(_pd().DataFrame(_rows(data)))
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        return infer_schema(_pd().DataFrame(data))
    if isinstance(data, list | tuple) or np.isscalar(data):
        return infer_schema(np.asarray(data))
    raise TypeError(
        f"cannot infer a schema from a {type(data).__name__}: give a pandas DataFrame, a numpy"
        " array or a dict of numpy arrays"
    )


def _rows(data: dict[str, Any]) -> Any:
    """A dict of columns (lists) or of one row's scalars, as DataFrame input."""
    if all(isinstance(v, list | tuple) for v in data.values()):
        return data
    return [data]


def infer_param_schema(params: dict[str, Any]) -> ParamSchema:
    """The parameter schema of an example's parameters, each example value the default."""
    np = _np()
    specs = []
    for name, value in params.items():
        if isinstance(value, list):
            kind = column_type(np.asarray(value).dtype) if value else "string"
            specs.append(ParamSpec(name, kind, value, (-1,)))
        else:
            specs.append(ParamSpec(name, column_type(np.asarray(value).dtype, [value]), value))
    return ParamSchema(tuple(specs))


def split_example(example: Any) -> tuple[Any, dict[str, Any] | None]:
    """An example's data and parameters: a ``(data, params)`` tuple has both, as MLflow's."""
    if isinstance(example, tuple) and len(example) == 2 and isinstance(example[1], dict):
        return example[0], example[1]
    return example, None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.date | dt.datetime) or hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} into an input example")


def save_example(example: Any, model_dir: str) -> dict[str, Any]:
    """Writes ``example`` (data, or a ``(data, params)`` tuple) into ``model_dir`` as
    MLflow does and returns the ``saved_input_example_info`` describing it."""
    data, params = split_example(example)
    info: dict[str, Any] = {"artifact_path": EXAMPLE_FILE}
    if is_dataframe(data):
        split = data.to_dict(orient="split")
        body: Any = {"columns": [str(c) for c in split["columns"]], "data": split["data"]}
        serving: dict[str, Any] = {"dataframe_split": body}
        info.update(type="dataframe", pandas_orient="split")
    elif _is_ndarray(data) or (isinstance(data, dict) and any(map(_is_ndarray, data.values()))):
        body = _jsonable(data) if _is_ndarray(data) else {k: _jsonable(v) for k, v in data.items()}
        serving = {"inputs": body}
        info["type"] = "ndarray"
    else:
        body, serving = data, {"inputs": data}
        info["type"] = "json_object"
    if params:
        body = {"inputs": body, "params": params}
        serving["params"] = params
        info["params"] = "true"
    with open(os.path.join(model_dir, EXAMPLE_FILE), "w", encoding="utf-8") as f:
        json.dump(body, f, default=_jsonable)
    with open(os.path.join(model_dir, SERVING_EXAMPLE_FILE), "w", encoding="utf-8") as f:
        json.dump(serving, f, default=_jsonable, indent=2)
    info["serving_input_path"] = SERVING_EXAMPLE_FILE
    return info


def load_example(model_dir: str, info: dict[str, Any], inputs: Schema | None) -> Any:
    """The input example a model directory holds (``info`` is its
    ``saved_input_example_info``), typed as ``inputs`` says: a DataFrame, an array, a dict
    of arrays, or the JSON value."""
    with open(os.path.join(model_dir, info.get("artifact_path", EXAMPLE_FILE)), "rb") as f:
        body = json.load(f)
    if info.get("params"):
        body = body["inputs"]
    if info.get("type") == "dataframe":
        frame = _pd().DataFrame(body["data"], columns=body["columns"])
        for spec in inputs.specs if inputs is not None and not inputs.is_tensor else ():
            if isinstance(spec, ColSpec) and isinstance(spec.type, str) and spec.name in frame:
                if spec.type not in ("string", "binary"):
                    frame[spec.name] = frame[spec.name].astype(COLUMN_TYPES[spec.type])
        return frame
    if info.get("type") == "ndarray":
        np = _np()
        specs = inputs.specs if inputs is not None else ()
        tensors = {s.name: s.dtype for s in specs if isinstance(s, TensorSpec)}
        if isinstance(body, dict):
            return {k: np.asarray(v, dtype=_numpy_dtype(tensors.get(k))) for k, v in body.items()}
        return np.asarray(body, dtype=_numpy_dtype(next(iter(tensors.values()), None)))
    return body


def _numpy_dtype(name: str | None) -> str | None:
    return None if name in (None, "str", "bytes") else name
