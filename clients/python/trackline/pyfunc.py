"""The python_function flavor for your own code: subclass ``PythonModel``, implement
``predict(context, model_input, params=None)`` (and ``load_context`` to set up from the
model's artifacts), then ``save_model`` / ``log_model`` it. The instance is saved with
cloudpickle, with the files of ``code_paths`` and ``artifacts`` copied into the model.

Such a model's loader module is ``trackline.pyfunc``: ``trackline.load_model`` loads it, and
so does ``mlflow.pyfunc.load_model`` wherever Trackline is installed next to MLflow (the
pickle refers to Trackline's classes, so not where it is not). Models written by
``mlflow.pyfunc`` (loader module ``mlflow.pyfunc.model``) load here when mlflow is installed,
since their pickle refers to MLflow's classes.
"""

from __future__ import annotations

import inspect
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .models import Model, ModelInfo, ModelSignature, PyFuncModel, register_flavor
from .models import load_model as _load_model
from .models import log_model as _log_model
from .models import save_model as _save_model
from .models._api import Requirements
from .models._deps import require
from .models._environment import pinned, python_version
from .models._mlmodel import PYFUNC_FLAVOR

PYTHON_MODEL_FILE = "python_model.pkl"
ARTIFACTS_DIR = "artifacts"


class PythonModelContext:
    """What ``load_context`` and ``predict`` get: ``artifacts`` (name -> local path of the
    file or directory saved with the model) and ``model_config``."""

    def __init__(self, artifacts: Mapping[str, str], model_config: Mapping[str, Any]) -> None:
        self._artifacts = dict(artifacts)
        self._model_config = dict(model_config)

    @property
    def artifacts(self) -> dict[str, str]:
        return self._artifacts

    @property
    def model_config(self) -> dict[str, Any]:
        return self._model_config


class PythonModel(ABC):
    """A model of your own code, as MLflow's ``mlflow.pyfunc.PythonModel``."""

    def load_context(self, context: PythonModelContext) -> None:  # noqa: B027 - optional hook
        """Called once when the model is loaded, before any ``predict``."""

    @abstractmethod
    def predict(
        self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
    ) -> Any:
        """The model's output for ``model_input`` (checked against the signature first)."""


class _PythonModelFlavor:
    name = PYFUNC_FLAVOR
    loader_modules: tuple[str, ...] = ("trackline.pyfunc", "mlflow.pyfunc.model")

    def accepts(self, model: Any) -> bool:
        return isinstance(model, PythonModel)

    def save(
        self,
        model: Any,
        model_dir: str,
        mlmodel: Model,
        *,
        code: str | None = None,
        artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
        model_config: Mapping[str, Any] | None = None,
    ) -> list[str]:
        cloudpickle = require("cloudpickle", "cloudpickle", extra="models")
        with open(os.path.join(model_dir, PYTHON_MODEL_FILE), "wb") as out:
            cloudpickle.dump(model, out)
        settings: dict[str, Any] = {
            "loader_module": "trackline.pyfunc",
            "python_model": PYTHON_MODEL_FILE,
            "cloudpickle_version": cloudpickle.__version__,
            "python_version": python_version(),
        }
        if code:
            settings["code"] = code
        if artifacts:
            settings["artifacts"] = _copy_artifacts(artifacts, model_dir)
        if model_config:
            settings["model_config"] = dict(model_config)
        mlmodel.add_flavor(PYFUNC_FLAVOR, **settings)
        return [pinned("trackline"), pinned("cloudpickle")]

    def load_pyfunc(self, model_dir: str, mlmodel: Model) -> _PythonModelPredictor:
        settings = mlmodel.flavors[PYFUNC_FLAVOR]
        cloudpickle = require("cloudpickle", "cloudpickle", extra="models")
        with open(
            os.path.join(model_dir, settings.get("python_model", PYTHON_MODEL_FILE)), "rb"
        ) as f:
            try:
                model = cloudpickle.load(f)
            except ModuleNotFoundError as e:
                raise ModuleNotFoundError(
                    f"the model's python_model needs module {e.name!r} to unpickle: install"
                    f" it (a model saved by mlflow.pyfunc needs mlflow)",
                    name=e.name,
                ) from e
        artifacts = {
            name: os.path.join(model_dir, entry["path"])
            for name, entry in (settings.get("artifacts") or {}).items()
        }
        context = PythonModelContext(artifacts, settings.get("model_config") or {})
        model.load_context(context)
        return _PythonModelPredictor(model, context)


def _copy_artifacts(
    artifacts: Mapping[str, str | os.PathLike[str]], model_dir: str
) -> dict[str, dict[str, str]]:
    """Copies each artifact into ``artifacts/`` of the model; the flavor's entry for them."""
    os.makedirs(os.path.join(model_dir, ARTIFACTS_DIR), exist_ok=True)
    entries = {}
    for name, source in artifacts.items():
        source = os.fspath(source)
        relative = os.path.join(ARTIFACTS_DIR, os.path.basename(source.rstrip(os.sep)))
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(model_dir, relative))
        else:
            shutil.copy2(source, os.path.join(model_dir, relative))
        entries[name] = {"path": relative, "uri": source}
    return entries


class _PythonModelPredictor:
    def __init__(self, model: Any, context: PythonModelContext) -> None:
        self._model = model
        self._context = context
        self._takes_params = "params" in inspect.signature(model.predict).parameters

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        if self._takes_params:
            return self._model.predict(self._context, data, params=params)
        return self._model.predict(self._context, data)

    def unwrap(self) -> Any:
        return self._model


register_flavor(_PythonModelFlavor())


def save_model(
    path: str | os.PathLike[str],
    python_model: PythonModel,
    *,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    model_config: Mapping[str, Any] | None = None,
    signature: ModelSignature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: Requirements = None,
) -> Model:
    """Writes ``python_model`` as a model directory at ``path`` (see
    ``trackline.models.save_model``); ``artifacts`` (name -> local file or directory) are
    copied in and reach ``load_context`` as ``context.artifacts``."""
    return _save_model(
        python_model, path, flavor=PYFUNC_FLAVOR, signature=signature,
        input_example=input_example, pip_requirements=pip_requirements, code_paths=code_paths,
        artifacts=artifacts, model_config=model_config,
    )  # fmt: skip


def log_model(
    name: str,
    python_model: PythonModel,
    *,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    model_config: Mapping[str, Any] | None = None,
    signature: ModelSignature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: Requirements = None,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Logs ``python_model`` to the active run under ``name`` (see
    ``trackline.models.log_model``)."""
    return _log_model(
        python_model, name, flavor=PYFUNC_FLAVOR, signature=signature,
        input_example=input_example, pip_requirements=pip_requirements,
        registered_model_name=registered_model_name, code_paths=code_paths,
        artifacts=artifacts, model_config=model_config,
    )  # fmt: skip


def load_model(
    model_uri: str | os.PathLike[str], dst_path: str | os.PathLike[str] | None = None
) -> PyFuncModel:
    """The model at ``model_uri`` behind ``predict`` (as ``trackline.load_model``)."""
    return _load_model(model_uri, dst_path)


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> Any:
    """MLflow's loader protocol: ``mlflow.pyfunc.load_model`` calls this for a model whose
    loader module is ``trackline.pyfunc``."""
    mlmodel = Model.load(data_path)
    if model_config:
        mlmodel.flavors[PYFUNC_FLAVOR]["model_config"] = dict(model_config)
    return _PythonModelFlavor().load_pyfunc(data_path, mlmodel)
