"""Models saved to and loaded from local directories: the sklearn and python_function
flavors, their files, the flavor registry, version warnings and missing dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn  # type: ignore[import-untyped]
import trackline
import trackline.pyfunc
import trackline.sklearn
import yaml
from trackline.models import (
    MissingDependency,
    Model,
    SchemaError,
    load_model,
    register_flavor,
    save_model,
)

from tests.support.models import Scaler, trained_classifier


@pytest.mark.parametrize("serialization_format", ["pickle", "cloudpickle"])
def test_an_estimator_round_trips_with_its_signature_and_example(
    tmp_path: Path, serialization_format: str
) -> None:
    model, frame = trained_classifier()
    path = tmp_path / "model"
    trackline.sklearn.save_model(
        model, path, serialization_format=serialization_format, input_example=frame.head(3)
    )
    assert sorted(os.listdir(path)) == [
        "MLmodel", "conda.yaml", "input_example.json", "model.pkl", "python_env.yaml",
        "requirements.txt", "serving_input_example.json",
    ]  # fmt: skip
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"] == {
        "pickled_model": "model.pkl",
        "sklearn_version": sklearn.__version__,
        "serialization_format": serialization_format,
        "code": None,
    }
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert mlmodel["saved_input_example_info"]["type"] == "dataframe"
    assert f"scikit-learn=={sklearn.__version__}" in (path / "requirements.txt").read_text()

    loaded = load_model(path)
    assert (loaded.predict(frame) == model.predict(frame)).all()
    signature = loaded.metadata.signature
    assert signature is not None and signature.inputs is not None
    assert signature.inputs.names() == list(frame.columns)
    assert signature.outputs is not None and signature.outputs.is_tensor
    pd.testing.assert_frame_equal(loaded.input_example(), frame.head(3))
    estimator = trackline.sklearn.load_model(str(path))
    assert type(estimator) is type(model) and estimator is not model
    by_uri = trackline.load_model(path.as_uri())  # file:///...
    assert by_uri.model_dir == str(path) and (by_uri.predict(frame) == model.predict(frame)).all()
    assert loaded.unwrap_python_model().coef_.shape == model.coef_.shape


def test_predict_checks_the_signature(tmp_path: Path) -> None:
    model, frame = trained_classifier()
    trackline.sklearn.save_model(model, tmp_path / "m", input_example=frame.head(2))
    loaded = trackline.load_model(str(tmp_path / "m"))
    shuffled = frame[list(reversed(frame.columns))].assign(extra="x")
    assert (loaded.predict(shuffled) == model.predict(frame)).all()
    with pytest.raises(SchemaError, match="'petal_width'"):
        loaded.predict(frame.drop(columns=["petal_width"]))
    as_ints = frame.round().astype("int32")
    assert (loaded.predict(as_ints) == model.predict(as_ints.astype("float64"))).all()


def test_a_python_model_round_trips_with_artifacts_params_and_code(tmp_path: Path) -> None:
    (tmp_path / "offset.txt").write_text("0.5")
    helper = tmp_path / "src" / "trackline_test_helper_mod.py"
    helper.parent.mkdir()
    helper.write_text("FACTOR = 10\n")
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    trackline.pyfunc.save_model(
        tmp_path / "py",
        Scaler(),
        artifacts={"offset": tmp_path / "offset.txt"},
        code_paths=[helper],
        input_example=(frame, {"factor": 2.0}),
    )
    flavor = Model.load(tmp_path / "py").flavors["python_function"]
    assert flavor["loader_module"] == "trackline.pyfunc"
    assert flavor["python_model"] == "python_model.pkl" and flavor["code"] == "code"
    assert flavor["artifacts"]["offset"]["path"] == os.path.join("artifacts", "offset.txt")

    loaded = trackline.pyfunc.load_model(tmp_path / "py")
    assert loaded.predict(frame).tolist() == [2.5, 4.5]  # the example's factor, the default
    assert loaded.predict(frame, params={"factor": 1.0}).tolist() == [1.5, 2.5]
    signature = loaded.metadata.signature
    assert signature is not None and signature.params is not None
    assert [p.name for p in signature.params.params] == ["factor"]
    import trackline_test_helper_mod  # importable from the model's code directory

    assert Path(trackline_test_helper_mod.__file__).parent == tmp_path / "py" / "code"
    assert isinstance(loaded.unwrap_python_model(), Scaler)


def test_saving_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    with pytest.raises(FileExistsError):
        trackline.sklearn.save_model(trained_classifier()[0], tmp_path / "taken")


def test_a_failed_save_leaves_no_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="serialization_format"):
        trackline.sklearn.save_model(
            trained_classifier()[0], tmp_path / "m", serialization_format="skops"
        )
    assert not (tmp_path / "m").exists()


def test_the_flavor_is_inferred_from_the_model_type(tmp_path: Path) -> None:
    save_model(trained_classifier()[0], tmp_path / "sk")
    save_model(Scaler(), tmp_path / "py")
    assert "sklearn" in Model.load(tmp_path / "sk").flavors
    assert Model.load(tmp_path / "py").flavors["python_function"]["loader_module"] == (
        "trackline.pyfunc"
    )
    with pytest.raises(TypeError, match="no flavor saves a builtins.object"):
        save_model(object(), tmp_path / "none")


class _Doubler:
    def __init__(self, scale: float) -> None:
        self.scale = scale


class _DoublerFlavor:
    """A flavor outside the package: registered, it saves and loads with no change to the
    core."""

    name = "doubler"
    loader_modules: tuple[str, ...] = ("tests.unit.doubler",)

    def accepts(self, model: Any) -> bool:
        return isinstance(model, _Doubler)

    def save(self, model: Any, model_dir: str, mlmodel: Model, *, code: str | None) -> list[str]:
        Path(model_dir, "scale.txt").write_text(str(model.scale))
        mlmodel.add_flavor("python_function", loader_module="tests.unit.doubler")
        mlmodel.add_flavor("doubler", scale_file="scale.txt")
        return ["doubler==1.0"]

    def load_pyfunc(self, model_dir: str, mlmodel: Model) -> Any:
        scale = float(Path(model_dir, mlmodel.flavors["doubler"]["scale_file"]).read_text())

        class Predictor:
            def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
                return np.asarray(data) * scale

        return Predictor()


def test_a_registered_flavor_saves_and_loads(tmp_path: Path) -> None:
    register_flavor(_DoublerFlavor())
    save_model(_Doubler(3.0), tmp_path / "d", input_example=np.array([[1.0, 2.0]]))
    assert (tmp_path / "d" / "requirements.txt").read_text() == "doubler==1.0"
    loaded = load_model(tmp_path / "d")
    assert loaded.predict(np.array([[1.0, 1.0]])).tolist() == [[3.0, 3.0]]
    signature = loaded.metadata.signature
    assert signature is not None and signature.outputs is not None


def test_another_minor_version_of_sklearn_warns_once(tmp_path: Path) -> None:
    trackline.sklearn.save_model(trained_classifier()[0], tmp_path / "m")
    mlmodel = Model.load(tmp_path / "m")
    major, minor = sklearn.__version__.split(".")[:2]
    old = f"{major}.{int(minor) + 7}.0"
    mlmodel.flavors["sklearn"]["sklearn_version"] = old
    mlmodel.save(tmp_path / "m")
    with pytest.warns(
        UserWarning, match=rf"scikit-learn {old}.*scikit-learn {sklearn.__version__}"
    ):
        trackline.sklearn.load_model(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trackline.load_model(tmp_path / "m")  # the same pair of versions: no second warning


def test_a_missing_flavor_dependency_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trackline.sklearn.save_model(trained_classifier()[0], tmp_path / "m")
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    with pytest.raises(MissingDependency, match=r"pip install scikit-learn.*trackline\[sklearn\]"):
        trackline.sklearn.load_model(tmp_path / "m")
    with pytest.raises(ImportError, match="scikit-learn"):
        trackline.load_model(tmp_path / "m")


def test_a_model_without_python_function_says_which_flavors_it_has(tmp_path: Path) -> None:
    trackline.sklearn.save_model(trained_classifier()[0], tmp_path / "m")
    mlmodel = Model.load(tmp_path / "m")
    del mlmodel.flavors["python_function"]
    mlmodel.save(tmp_path / "m")
    with pytest.raises(ValueError, match="no python_function flavor.*sklearn"):
        load_model(tmp_path / "m")
    assert trackline.sklearn.load_model(tmp_path / "m") is not None


def test_importing_trackline_imports_no_model_dependency() -> None:
    code = (
        "import sys, trackline\n"
        "heavy = [m for m in ('yaml', 'cloudpickle', 'numpy', 'pandas', 'sklearn')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(trackline.load_model) and callable(trackline.log_model)\n"
        "trackline.sklearn, trackline.pyfunc\n"
        "assert 'sklearn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
