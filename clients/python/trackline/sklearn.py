"""The scikit-learn flavor: save, log and load estimators in MLflow's ``sklearn`` format
(pickle or cloudpickle, the scikit-learn version recorded), with a python_function flavor
whose loader module is ``mlflow.sklearn``, so ``mlflow.pyfunc.load_model`` loads them too.
Models MLflow saved load here with Trackline's own code; mlflow is never imported.

scikit-learn is imported when a function runs (``pip install 'trackline[sklearn]'``).
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from .models import Model, ModelInfo, ModelSignature, register_flavor
from .models import log_model as _log_model
from .models import save_model as _save_model
from .models._api import Requirements, local_model_dir
from .models._deps import require
from .models._environment import pinned, python_version
from .models._mlmodel import PYFUNC_FLAVOR
from .models._pyfunc_model import add_code_to_path

FLAVOR_NAME = "sklearn"
SERIALIZATION_FORMATS = ("pickle", "cloudpickle")
MODEL_FILE = "model.pkl"
_warned: set[tuple[str, str]] = set()


def _sklearn() -> Any:
    return require("sklearn", "scikit-learn", extra="sklearn")


class _SklearnFlavor:
    name = FLAVOR_NAME
    loader_modules: tuple[str, ...] = ("mlflow.sklearn",)

    def accepts(self, model: Any) -> bool:
        return type(model).__module__.split(".", 1)[0] == "sklearn"

    def save(
        self,
        model: Any,
        model_dir: str,
        mlmodel: Model,
        *,
        code: str | None = None,
        serialization_format: str = "cloudpickle",
        pyfunc_predict_fn: str = "predict",
    ) -> list[str]:
        sklearn = _sklearn()
        if serialization_format not in SERIALIZATION_FORMATS:
            raise ValueError(
                f"serialization_format must be one of {', '.join(SERIALIZATION_FORMATS)},"
                f" not {serialization_format!r}"
            )
        dumper: Any = pickle
        if serialization_format == "cloudpickle":
            dumper = require("cloudpickle", "cloudpickle", extra="sklearn")
        with open(os.path.join(model_dir, MODEL_FILE), "wb") as out:
            # The default protocol, as MLflow: readable by every Python the model may meet.
            dumper.dump(model, out, protocol=pickle.DEFAULT_PROTOCOL)
        if hasattr(model, pyfunc_predict_fn):
            pyfunc: dict[str, Any] = {
                "loader_module": "mlflow.sklearn",
                "model_path": MODEL_FILE,
                "predict_fn": pyfunc_predict_fn,
                "python_version": python_version(),
            }
            if code:
                pyfunc["code"] = code
            mlmodel.add_flavor(PYFUNC_FLAVOR, **pyfunc)
        mlmodel.add_flavor(
            FLAVOR_NAME,
            pickled_model=MODEL_FILE,
            sklearn_version=sklearn.__version__,
            serialization_format=serialization_format,
            code=code,
        )
        requirements = [pinned("scikit-learn")]
        if serialization_format == "cloudpickle":
            requirements.append(pinned("cloudpickle"))
        return requirements

    def load_pyfunc(self, model_dir: str, mlmodel: Model) -> _SklearnPredictor:
        settings = mlmodel.flavors.get(PYFUNC_FLAVOR, {})
        predict_fn = str(settings.get("predict_fn") or "predict")
        return _SklearnPredictor(_load_estimator(model_dir, mlmodel), predict_fn)


class _SklearnPredictor:
    """An estimator behind ``predict(data, params=None)``: its ``predict_fn`` method."""

    def __init__(self, estimator: Any, predict_fn: str) -> None:
        self._estimator = estimator
        self._predict = getattr(estimator, predict_fn)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self._predict(data)

    def unwrap(self) -> Any:
        return self._estimator


def _load_estimator(model_dir: str, mlmodel: Model) -> Any:
    """The estimator a model directory holds, as its sklearn flavor says (or, for a model
    with only a python_function entry, its pickled ``model_path``)."""
    settings = mlmodel.flavors.get(FLAVOR_NAME)
    sklearn = _sklearn()
    if settings is None:
        settings = mlmodel.flavors.get(PYFUNC_FLAVOR)
        if settings is None or "model_path" not in settings:
            raise ValueError(f"the model at {model_dir!r} has no {FLAVOR_NAME} flavor")
        settings = {"pickled_model": settings["model_path"], "code": settings.get("code")}
    _warn_on_version(str(settings.get("sklearn_version") or ""), sklearn.__version__)
    add_code_to_path(model_dir, settings)
    path = os.path.join(model_dir, str(settings.get("pickled_model") or MODEL_FILE))
    serialization = settings.get("serialization_format") or "pickle"
    if serialization == "skops":
        skops_io = require("skops.io", "skops", extra=None)
        return skops_io.load(path, trusted=settings.get("skops_trusted_types"))
    if serialization not in SERIALIZATION_FORMATS:
        raise ValueError(f"the model at {model_dir!r} has an unknown format {serialization!r}")
    loader: Any = pickle
    if serialization == "cloudpickle":
        loader = require("cloudpickle", "cloudpickle", extra="sklearn")
    with open(path, "rb") as f:
        return loader.load(f)


def _warn_on_version(saved: str, installed: str) -> None:
    """Warns, once per pair of versions, when the model was saved by another minor version
    of scikit-learn than the one installed: its pickle may not load or predict the same."""
    if not saved or saved.split(".")[:2] == installed.split(".")[:2]:
        return
    if (saved, installed) in _warned:
        return
    _warned.add((saved, installed))
    warnings.warn(
        f"this model was saved with scikit-learn {saved}, and scikit-learn {installed} is"
        f" installed: it may fail to load or predict differently (pip install"
        f" scikit-learn=={saved} loads it as saved)",
        UserWarning,
        stacklevel=4,
    )


register_flavor(_SklearnFlavor())


def save_model(
    sk_model: Any,
    path: str | os.PathLike[str],
    *,
    serialization_format: str = "cloudpickle",
    signature: ModelSignature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: Requirements = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    pyfunc_predict_fn: str = "predict",
) -> Model:
    """Writes ``sk_model`` as a model directory at ``path`` (see
    ``trackline.models.save_model``); ``pyfunc_predict_fn`` is the method
    python_function's ``predict`` calls (``predict_proba``, ...)."""
    return _save_model(
        sk_model, path, flavor=FLAVOR_NAME, signature=signature, input_example=input_example,
        pip_requirements=pip_requirements, code_paths=code_paths,
        serialization_format=serialization_format, pyfunc_predict_fn=pyfunc_predict_fn,
    )  # fmt: skip


def log_model(
    sk_model: Any,
    name: str,
    *,
    serialization_format: str = "cloudpickle",
    signature: ModelSignature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: Requirements = None,
    registered_model_name: str | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    pyfunc_predict_fn: str = "predict",
) -> ModelInfo:
    """Logs ``sk_model`` to the active run under ``name`` (see
    ``trackline.models.log_model``)."""
    return _log_model(
        sk_model, name, flavor=FLAVOR_NAME, signature=signature, input_example=input_example,
        pip_requirements=pip_requirements, registered_model_name=registered_model_name,
        code_paths=code_paths, serialization_format=serialization_format,
        pyfunc_predict_fn=pyfunc_predict_fn,
    )  # fmt: skip


def load_model(
    model_uri: str | os.PathLike[str], dst_path: str | os.PathLike[str] | None = None
) -> Any:
    """The scikit-learn estimator of the model at ``model_uri`` (any URI
    ``trackline.load_model`` takes), saved by Trackline or by MLflow."""
    model_dir = local_model_dir(model_uri, dst_path)
    return _load_estimator(model_dir, Model.load(model_dir))
