"""Signatures: inferred from each kind of input, written as MLflow writes them, and the
input checked against them by ``predict``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from trackline.models import (
    ColSpec,
    ModelSignature,
    ParamSchema,
    ParamSpec,
    Schema,
    SchemaError,
    TensorSpec,
    infer_signature,
)
from trackline.models._enforce import enforce_params, enforce_schema


def test_a_dataframe_gives_one_column_per_column_with_mlflow_types() -> None:
    frame = pd.DataFrame(
        {
            "d": [1.0],
            "f": np.array([1.0], dtype="float32"),
            "l": [1],
            "i": np.array([1], dtype="int32"),
            "b": [True],
            "s": ["x"],
            "y": [b"x"],
            "t": pd.to_datetime(["2020-01-01"]),
        }
    )
    schema = infer_signature(frame).inputs
    assert schema is not None
    assert [(s.name, s.type) for s in schema.specs if isinstance(s, ColSpec)] == [
        ("d", "double"), ("f", "float"), ("l", "long"), ("i", "integer"),
        ("b", "boolean"), ("s", "string"), ("y", "binary"), ("t", "datetime"),
    ]  # fmt: skip
    assert json.loads(schema.to_json())[0] == {"type": "double", "name": "d", "required": True}


def test_an_array_gives_a_tensor_of_any_batch_size() -> None:
    signature = infer_signature(np.zeros((5, 3), dtype="float32"), np.zeros(5, dtype="int64"))
    assert signature.inputs == Schema((TensorSpec("float32", (-1, 3)),))
    assert signature.to_dict() == {
        "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]',
        "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
        "params": None,
    }


def test_a_dict_of_arrays_gives_named_tensors_and_params_their_defaults() -> None:
    signature = infer_signature(
        {"x": np.array([1, 2]), "y": np.zeros((2, 4))}, params={"k": 3, "tags": ["a"]}
    )
    assert signature.inputs == Schema(
        (TensorSpec("int64", (-1,), "x"), TensorSpec("float64", (-1, 4), "y"))
    )
    assert signature.params == ParamSchema(
        (ParamSpec("k", "long", 3), ParamSpec("tags", "string", ["a"], (-1,)))
    )


def test_rows_and_lists_are_taken_as_frames_and_arrays() -> None:
    rows = infer_signature([{"a": 1.0, "s": "x"}, {"a": 2.0, "s": "y"}]).inputs
    assert rows == Schema((ColSpec("double", "a"), ColSpec("string", "s")))
    one_row = infer_signature({"a": 1, "s": "x"}).inputs
    assert one_row == Schema((ColSpec("long", "a"), ColSpec("string", "s")))
    assert infer_signature([[1.0, 2.0]]).inputs == Schema((TensorSpec("float64", (-1, 2)),))


def test_a_signature_survives_its_dict_form() -> None:
    signature = infer_signature(pd.DataFrame({"a": [1.0]}), np.array([1]), {"k": 0.5})
    assert ModelSignature.from_dict(signature.to_dict()) == signature


COLUMNS = Schema((ColSpec("double", "a"), ColSpec("long", "b")))


def test_columns_are_put_in_signature_order_and_extra_ones_dropped() -> None:
    frame = pd.DataFrame({"extra": ["x"], "b": [2], "a": [1.0]})
    checked = enforce_schema(frame, COLUMNS)
    assert list(checked.columns) == ["a", "b"]


def test_a_missing_column_is_named() -> None:
    with pytest.raises(SchemaError, match="'b'") as caught:
        enforce_schema(pd.DataFrame({"a": [1.0]}), COLUMNS)
    assert caught.value.column == "b" and isinstance(caught.value, ValueError)


def test_a_wrong_type_is_named() -> None:
    wanted = "column 'b' is (str|object); the model's signature wants long"
    with pytest.raises(SchemaError, match=wanted) as caught:
        enforce_schema(pd.DataFrame({"a": [1.0], "b": ["two"]}), COLUMNS)
    assert caught.value.column == "b"


def test_a_float_where_an_integer_is_wanted_is_refused() -> None:
    with pytest.raises(SchemaError, match="'b'"):
        enforce_schema(pd.DataFrame({"a": [1.0], "b": [1.5]}), COLUMNS)


def test_ints_widen_to_double_where_no_value_changes() -> None:
    frame = pd.DataFrame(
        {"a": np.array([1, 2], dtype="int32"), "b": np.array([3, 4], dtype="int16")}
    )
    checked = enforce_schema(frame, COLUMNS)
    assert checked["a"].dtype == np.float64 and checked["b"].dtype == np.int64
    big = enforce_schema(pd.DataFrame({"a": [2**40], "b": [1]}), COLUMNS)
    assert big["a"].tolist() == [float(2**40)]
    with pytest.raises(SchemaError, match="'a'"):
        enforce_schema(pd.DataFrame({"a": [2**60 + 1], "b": [1]}), COLUMNS)


def test_unnamed_columns_are_checked_by_position() -> None:
    schema = Schema((ColSpec("double"), ColSpec("string")))
    frame = pd.DataFrame({"n": np.array([1, 2], dtype="int32"), "s": ["a", "b"], "more": [0, 0]})
    checked = enforce_schema(frame, schema)
    assert list(checked.columns) == ["n", "s"] and checked["n"].dtype == np.float64
    with pytest.raises(SchemaError, match="'#1'"):
        enforce_schema(pd.DataFrame({"n": [1.0], "s": [2.5]}), schema)


def test_dicts_and_arrays_become_frames_of_the_signature() -> None:
    assert list(enforce_schema({"b": 1, "a": 2.0}, COLUMNS).columns) == ["a", "b"]
    frame = enforce_schema(
        np.array([[1.0, 2.0]]), Schema((ColSpec("double", "a"), ColSpec("double", "b")))
    )
    assert frame.to_dict("records") == [{"a": 1.0, "b": 2.0}]


def test_tensors_check_shape_and_dtype_and_widen_safely() -> None:
    schema = Schema((TensorSpec("float64", (-1, 2)),))
    assert enforce_schema(np.ones((3, 2), dtype="float32"), schema).dtype == np.float64
    with pytest.raises(SchemaError, match=r"shape \(3, 4\)"):
        enforce_schema(np.ones((3, 4)), schema)
    with pytest.raises(SchemaError, match="float64"):
        enforce_schema(np.array([["a", "b"]]), schema)
    named = Schema((TensorSpec("int64", (-1,), "x"),))
    with pytest.raises(SchemaError, match="'x'"):
        enforce_schema({"y": np.array([1])}, named)


def test_params_get_defaults_and_wrong_types_are_named() -> None:
    schema = ParamSchema((ParamSpec("k", "long", 3), ParamSpec("scale", "double", 1.0)))
    assert enforce_params({"scale": 2}, schema) == {"k": 3, "scale": 2}
    with pytest.raises(SchemaError, match="'k'"):
        enforce_params({"k": "three"}, schema)
    with pytest.warns(UserWarning, match="other"):
        assert enforce_params({"other": 1}, schema) == {"k": 3, "scale": 1.0}
