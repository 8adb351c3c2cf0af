"""trackline.data: the digest is a function of the content alone (the same in every process,
another for changed data), bounded in cost by sampling large data; from_pandas and from_numpy
describe shapes, schemas and sources; a missing pandas or numpy is a clear ImportError."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from trackline import data
from trackline.data import Dataset, from_numpy, from_pandas, source_type


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [0.5, 1.5, 2.5, 3.5],
            "n": [1, 2, 3, 4],
            "s": ["a", "b", "c", "d"],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
        }
    )


def test_the_same_frame_has_the_same_digest() -> None:
    first, again = from_pandas(frame(), "a.csv"), from_pandas(frame().copy(), "b.csv")
    assert first.digest == again.digest
    assert len(first.digest) == 16 and int(first.digest, 16) >= 0


def test_the_digest_is_the_same_in_another_process() -> None:
    code = (
        "import pandas as pd; from trackline.data import from_pandas;"
        "print(from_pandas(pd.DataFrame({'x': [0.5, 1.5], 's': ['a', 'b']}), 'p').digest)"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    here = from_pandas(pd.DataFrame({"x": [0.5, 1.5], "s": ["a", "b"]}), "p").digest
    assert digests == {here}


@pytest.mark.parametrize(
    "change",
    [
        lambda df: df.assign(x=[0.5, 1.5, 2.5, 3.25]),  # one value
        lambda df: df.assign(s=["a", "b", "c", "e"]),  # one string
        lambda df: df.rename(columns={"x": "y"}),  # a column's name
        lambda df: df.astype({"n": "int32"}),  # a column's dtype
        lambda df: df.iloc[:3],  # a row fewer
        lambda df: df.iloc[[1, 0, 2, 3]],  # the order of rows
        lambda df: df[["n", "x", "s", "when"]],  # the order of columns
    ],
)
def test_a_changed_frame_has_another_digest(change: object) -> None:
    changed = change(frame())  # type: ignore[operator]
    assert from_pandas(changed, "a.csv").digest != from_pandas(frame(), "a.csv").digest


def test_a_large_frame_is_digested_from_a_bounded_sample() -> None:
    """Evenly spaced rows, the first and the last included: a change to a sampled row shows,
    one between samples does not (as with MLflow's digest of the first rows)."""
    n = 1_000_000
    big = pd.DataFrame({"v": np.arange(n, dtype=np.float64)})
    base = from_pandas(big, "big").digest
    last = big.copy()
    last.iloc[n - 1, 0] = -1.0
    assert from_pandas(last, "big").digest != base
    between = big.copy()
    between.iloc[1, 0] = -1.0  # rows 0 and ~100 are sampled, row 1 is not
    assert from_pandas(between, "big").digest == base
    assert len(data._positions(np, n)) == data.MAX_SAMPLE


def test_unhashable_values_are_digested_by_their_text() -> None:
    df = pd.DataFrame({"tokens": [[1, 2], [3]], "meta": [{"a": 1}, {"b": 2}]})
    changed = pd.DataFrame({"tokens": [[1, 2], [4]], "meta": [{"a": 1}, {"b": 2}]})
    assert from_pandas(df, "t").digest == from_pandas(df.copy(), "t").digest
    assert from_pandas(changed, "t").digest != from_pandas(df, "t").digest


def test_from_pandas_describes_the_frame() -> None:
    ds = from_pandas(frame(), "s3://bucket/train.parquet", name="train", targets="n")
    assert (ds.name, ds.source, ds.source_type) == ("train", "s3://bucket/train.parquet", "s3")
    schema = json.loads(ds.schema)
    assert [c["name"] for c in schema["columns"]] == ["x", "n", "s", "when"]
    assert schema["columns"][0]["dtype"] == "float64" and schema["targets"] == "n"
    assert json.loads(ds.profile) == {"num_rows": 4, "num_elements": 16}
    assert from_pandas(frame(), "a.csv").name == data.DEFAULT_NAME
    assert "targets" not in json.loads(from_pandas(frame(), "a.csv").schema)
    empty = from_pandas(pd.DataFrame(), "e")
    assert json.loads(empty.profile) == {"num_rows": 0, "num_elements": 0}


def test_from_pandas_refuses_what_is_not_a_frame_or_a_column() -> None:
    with pytest.raises(ValueError, match="targets"):
        from_pandas(frame(), "a.csv", targets="label")
    with pytest.raises(TypeError, match="DataFrame"):
        from_pandas(np.zeros(3), "a.csv")


def test_from_numpy_describes_features_and_targets() -> None:
    features = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    ds = from_numpy(features, "/data/x.npy", name="x", targets=[0, 1, 0, 1, 0, 1])
    assert (ds.name, ds.source_type) == ("x", "local")
    assert json.loads(ds.schema) == {
        "columns": [
            {"name": "features", "dtype": "float32", "shape": [-1, 2, 2]},
            {"name": "targets", "dtype": "int64", "shape": [-1]},
        ]
    }
    assert json.loads(ds.profile) == {"num_rows": 6, "num_elements": 30}
    scalar = from_numpy(np.float64(3.0), "s")
    assert json.loads(scalar.profile) == {"num_rows": 1, "num_elements": 1}


def test_numpy_digests_follow_values_shapes_and_targets() -> None:
    a = np.arange(12).reshape(3, 4)
    base = from_numpy(a, "p").digest
    assert from_numpy(a.copy(), "p").digest == base
    assert from_numpy(a.tolist(), "p").digest == base
    assert from_numpy(np.asfortranarray(a), "p").digest == base  # C order whatever the layout
    changed = a.copy()
    changed[2, 3] = 99
    assert from_numpy(changed, "p").digest != base
    assert from_numpy(a.reshape(4, 3), "p").digest != base
    assert from_numpy(a.astype(np.int32), "p").digest != base
    assert from_numpy(a, "p", targets=[1, 2, 3]).digest != base
    objects = np.array([{"a": 1}, None], dtype=object)
    assert from_numpy(objects, "p").digest == from_numpy(objects.copy(), "p").digest


def test_a_large_array_is_digested_from_a_bounded_sample() -> None:
    n = 2_000_000
    big = np.zeros(n)
    base = from_numpy(big, "p").digest
    big[-1] = 1.0
    assert from_numpy(big, "p").digest != base


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("s3://bucket/key", "s3"),
        ("GS://bucket/key", "gs"),
        ("https://example.org/d.csv", "http"),
        ("http://example.org/d.csv", "http"),
        ("file:///data/d.csv", "local"),
        ("/data/d.csv", "local"),
        ("relative/d.csv", "local"),
        ("C:\\data\\d.csv", "local"),
        ("", ""),
    ],
)
def test_source_types(source: str, kind: str) -> None:
    assert source_type(source) == kind


def test_datasets_become_inputs() -> None:
    ds = Dataset("d", "abc", "s3://b/k", "s3", "{}", "{}")
    given = ds.to_input("training", {"epochs": 3})
    assert given.dataset == ds.to_proto() and given.context == "training"
    assert [(t.key, t.value) for t in given.tags] == [("epochs", "3")]
    assert ds.to_input().context == "" and not ds.to_input().tags


@pytest.mark.parametrize("module", ["pandas", "numpy"])
def test_a_missing_library_is_a_clear_import_error(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = frame()
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(ImportError, match=f"from_pandas needs {module}.*pip install .*{module}"):
        from_pandas(df, "a.csv")
    if module == "numpy":
        with pytest.raises(ImportError, match="from_numpy needs numpy"):
            from_numpy([1, 2], "a.npy")
