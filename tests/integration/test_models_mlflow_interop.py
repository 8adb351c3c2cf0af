"""Models move between Trackline and the real MLflow (mlflow-skinny) both ways. MLflow runs
in a subprocess where Trackline cannot be imported (it asserts so), except where the test
is that MLflow loads a Trackline pyfunc model with Trackline installed next to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trackline
import trackline.pyfunc
import trackline.sklearn
import yaml
from trackline.models import ModelSignature

from tests.support.models import Scaler, run_python, trained_classifier

NO_TRACKLINE = """
try:
    import trackline
except ImportError:
    pass
else:
    raise AssertionError(f"trackline is importable here: {trackline.__file__}")
"""


@pytest.mark.parametrize("serialization_format", ["pickle", "cloudpickle"])
def test_mlflow_loads_a_model_trackline_saved(tmp_path: Path, serialization_format: str) -> None:
    model, frame = trained_classifier()
    path = tmp_path / "model"
    trackline.sklearn.save_model(
        model, path, serialization_format=serialization_format, input_example=frame.head(5)
    )
    frame.to_json(tmp_path / "frame.json", orient="split")
    out = run_python(
        NO_TRACKLINE
        + f"""
import json
import pandas as pd
import mlflow.pyfunc, mlflow.sklearn
from mlflow.models import Model

path = {str(path)!r}
frame = pd.read_json({str(tmp_path / "frame.json")!r}, orient="split")
estimator = mlflow.sklearn.load_model(path)
pyfunc = mlflow.pyfunc.load_model(path)
meta = Model.load(path)
example = meta.load_input_example(path)
print(json.dumps({{
    "estimator": estimator.predict(frame).tolist(),
    "pyfunc": pyfunc.predict(frame).tolist(),
    "example": pyfunc.predict(example).tolist(),
    "example_columns": list(example.columns),
    "inputs": meta.signature.inputs.input_names(),
    "input_types": [t.name for t in meta.signature.inputs.input_types()],
    "outputs": meta.signature.outputs.to_dict(),
}}))
""",
        trackline_importable=False,
    )
    seen = json.loads(out.strip().splitlines()[-1])
    expected = model.predict(frame).tolist()
    assert seen["estimator"] == seen["pyfunc"] == expected
    assert seen["example"] == expected[:5] and seen["example_columns"] == list(frame.columns)
    assert seen["inputs"] == list(frame.columns)
    assert seen["input_types"] == ["double"] * 4
    assert seen["outputs"] == [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]


@pytest.mark.parametrize("serialization_format", ["pickle", "cloudpickle"])
def test_trackline_loads_a_model_mlflow_saved(tmp_path: Path, serialization_format: str) -> None:
    path = tmp_path / "model"
    run_python(
        NO_TRACKLINE
        + f"""
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

data = load_iris(as_frame=True)
frame = data.frame.drop(columns=["target"])
frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
model = LogisticRegression(max_iter=500).fit(frame, data.target)
mlflow.sklearn.save_model(
    model, {str(path)!r}, serialization_format={serialization_format!r},
    input_example=frame.head(5),
)
""",
        trackline_importable=False,
    )
    model, frame = trained_classifier()  # the same data and estimator: the same predictions
    written = yaml.safe_load((path / "MLmodel").read_text())
    assert written["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"

    loaded = trackline.load_model(path)
    assert loaded.predict(frame).tolist() == model.predict(frame).tolist()
    estimator = trackline.sklearn.load_model(str(path))
    assert estimator.predict(frame).tolist() == model.predict(frame).tolist()
    signature = loaded.metadata.signature
    assert signature == ModelSignature.from_dict(written["signature"])
    assert signature is not None and signature.inputs is not None
    assert signature.inputs.names() == list(frame.columns)
    pd.testing.assert_frame_equal(loaded.input_example(), frame.head(5))
    with pytest.raises(trackline.models.SchemaError, match="'sepal_width'"):
        loaded.predict(frame.drop(columns=["sepal_width"]))


def test_mlflow_loads_a_trackline_python_model_where_trackline_is_installed(
    tmp_path: Path,
) -> None:
    (tmp_path / "offset.txt").write_text("1.0")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    trackline.pyfunc.save_model(
        tmp_path / "py",
        Scaler(),
        artifacts={"offset": tmp_path / "offset.txt"},
        input_example=(frame, {"factor": 3.0}),
    )
    out = run_python(
        f"""
import json
import pandas as pd
import mlflow.pyfunc

model = mlflow.pyfunc.load_model({str(tmp_path / "py")!r})
frame = pd.DataFrame({{"x": [1.0, 2.0, 3.0]}})
print(json.dumps({{
    "default": model.predict(frame).tolist(),
    "params": model.predict(frame, params={{"factor": 10.0}}).tolist(),
}}))
""",
        trackline_importable=True,
    )
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"default": [4.0, 7.0, 10.0], "params": [11.0, 21.0, 31.0]}
    assert trackline.load_model(tmp_path / "py").predict(frame).tolist() == seen["default"]
    assert np.allclose(
        trackline.load_model(tmp_path / "py").predict(frame, params={"factor": 10.0}),
        seen["params"],
    )


# Unpickling an mlflow.pyfunc.PythonModel subclass makes MLflow note its untyped predict.
@pytest.mark.filterwarnings("ignore:.*Any type hint:UserWarning")
def test_trackline_loads_an_mlflow_python_model_where_mlflow_is_installed(
    tmp_path: Path,
) -> None:
    (tmp_path / "offset.txt").write_text("100")
    run_python(
        NO_TRACKLINE
        + f"""
import mlflow.pyfunc
import pandas as pd

class AddOffset(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["offset"]) as f:
            self.offset = float(f.read())

    def predict(self, context, model_input, params=None):
        return (model_input["x"] + self.offset).to_numpy()

mlflow.pyfunc.save_model(
    {str(tmp_path / "py")!r}, python_model=AddOffset(),
    artifacts={{"offset": {str(tmp_path / "offset.txt")!r}}},
    input_example=pd.DataFrame({{"x": [1.0]}}),
)
""",
        trackline_importable=False,
    )
    loaded = trackline.load_model(tmp_path / "py")  # its pickle needs mlflow, installed here
    assert loaded.metadata.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.model"
    assert loaded.predict(pd.DataFrame({"x": [1.0, 2.0]})).tolist() == [101.0, 102.0]
    with pytest.raises(trackline.models.SchemaError, match="'x'"):
        loaded.predict(pd.DataFrame({"y": [1.0]}))
