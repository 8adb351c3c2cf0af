"""Model signatures in MLflow's form: column and tensor schemas, parameter schemas, and the
JSON strings the ``MLmodel`` file keeps them as.

Column types are MLflow's (``double``, ``float``, ``long``, ``integer``, ``boolean``,
``string``, ``binary``, ``datetime``); a tensor has a numpy dtype name and a shape where -1
is any size. A column of one of MLflow's composite types (array, object, map, any) read from
another tool's model keeps its JSON description as it is and is checked for presence only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Each column type and the numpy dtype name a value of it has in a pandas column.
COLUMN_TYPES: dict[str, str] = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


@dataclass(frozen=True)
class ColSpec:
    """One column: ``type`` is a column type name (or, for a composite type, its JSON
    description as a dict); ``name`` is None for an unnamed (positional) column."""

    type: str | dict[str, Any]
    name: str | None = None
    required: bool = True

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = (
            dict(self.type) if isinstance(self.type, dict) else {"type": self.type}
        )
        if self.name is not None:
            body["name"] = self.name
        body["required"] = self.required
        return body

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColSpec:
        body = dict(d)
        name = body.pop("name", None)
        required = bool(body.pop("required", True))
        kind = body.get("type")
        if isinstance(kind, str) and kind in COLUMN_TYPES and len(body) == 1:
            return cls(kind, name, required)
        if not isinstance(kind, str):
            raise ValueError(f"a column spec needs a type: {d!r:.200}")
        return cls(body, name, required)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: a numpy dtype name (``float64``, ``int32``, ...) and a shape, -1 where
    any size goes (the first axis, the batch, usually)."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {} if self.name is None else {"name": self.name}
        body["type"] = "tensor"
        body["tensor-spec"] = {"dtype": self.dtype, "shape": list(self.shape)}
        return body

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        spec = d["tensor-spec"]
        return cls(str(spec["dtype"]), tuple(int(n) for n in spec["shape"]), d.get("name"))


@dataclass(frozen=True)
class Schema:
    """The inputs or outputs of a model: all columns or all tensors, all named or none."""

    specs: tuple[ColSpec | TensorSpec, ...]

    def __post_init__(self) -> None:
        if not self.specs:
            raise ValueError("a schema needs at least one column or tensor")
        if len({isinstance(s, TensorSpec) for s in self.specs}) > 1:
            raise ValueError("a schema holds columns or tensors, not both")
        if len({s.name is None for s in self.specs}) > 1:
            raise ValueError("a schema's columns or tensors are all named or all unnamed")

    @property
    def is_tensor(self) -> bool:
        return isinstance(self.specs[0], TensorSpec)

    @property
    def has_names(self) -> bool:
        return self.specs[0].name is not None

    def names(self) -> list[str]:
        return [s.name for s in self.specs if s.name is not None]

    def to_json(self) -> str:
        return json.dumps([s.to_dict() for s in self.specs])

    @classmethod
    def from_json(cls, text: str) -> Schema:
        specs = json.loads(text)
        return cls(
            tuple(
                TensorSpec.from_dict(s) if s.get("type") == "tensor" else ColSpec.from_dict(s)
                for s in specs
            )
        )


@dataclass(frozen=True)
class ParamSpec:
    """An inference parameter: its name, column type, default and shape (None for a
    scalar, ``(-1,)`` for a list)."""

    name: str
    type: str
    default: Any
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        shape = None if self.shape is None else list(self.shape)
        return {"name": self.name, "default": self.default, "shape": shape, "type": self.type}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParamSpec:
        shape = d.get("shape")
        return cls(d["name"], d["type"], d.get("default"), None if shape is None else tuple(shape))


@dataclass(frozen=True)
class ParamSchema:
    """The parameters ``predict`` accepts, each with its default."""

    params: tuple[ParamSpec, ...]

    def to_json(self) -> str:
        return json.dumps([p.to_dict() for p in self.params])

    @classmethod
    def from_json(cls, text: str) -> ParamSchema:
        return cls(tuple(ParamSpec.from_dict(p) for p in json.loads(text)))


@dataclass(frozen=True)
class ModelSignature:
    """What a model takes and returns, kept in ``MLmodel`` as MLflow keeps it: each part a
    JSON string (or null)."""

    inputs: Schema | None = None
    outputs: Schema | None = None
    params: ParamSchema | None = field(default=None)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "inputs": None if self.inputs is None else self.inputs.to_json(),
            "outputs": None if self.outputs is None else self.outputs.to_json(),
            "params": None if self.params is None else self.params.to_json(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSignature:
        inputs, outputs, params = d.get("inputs"), d.get("outputs"), d.get("params")
        return cls(
            Schema.from_json(inputs) if inputs else None,
            Schema.from_json(outputs) if outputs else None,
            ParamSchema.from_json(params) if params else None,
        )
