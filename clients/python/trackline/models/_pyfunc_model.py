"""``PyFuncModel``: any loaded model behind one ``predict`` that checks its input against
the model's signature first."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from ._enforce import enforce_params, enforce_schema
from ._flavors import Predictor
from ._infer import load_example
from ._mlmodel import Model

CODE_DIR = "code"


class PyFuncModel:
    """A loaded model: ``predict(data, params=None)``, ``metadata`` (its ``MLmodel``) and
    ``model_dir``, the local directory it was loaded from."""

    def __init__(self, predictor: Predictor, metadata: Model, model_dir: str) -> None:
        self._predictor = predictor
        self.metadata = metadata
        self.model_dir = model_dir

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The model's prediction for ``data`` (a pandas DataFrame, numpy array, dict of
        arrays, ... as the signature says). Against a signature, columns are taken by name
        in its order (others dropped) and widened where no value changes; a missing column
        or a wrong type raises SchemaError naming it. ``params`` are checked against the
        signature's parameters, their defaults filling in the others."""
        signature = self.metadata.signature
        if signature is not None and signature.inputs is not None:
            data = enforce_schema(data, signature.inputs)
        checked = enforce_params(params, None if signature is None else signature.params)
        return self._predictor.predict(data, params=checked or None)

    def unwrap_python_model(self) -> Any:
        """The object behind ``predict``: the estimator of a scikit-learn model, the
        ``PythonModel`` of a python_function one."""
        unwrap = getattr(self._predictor, "unwrap", None)
        return unwrap() if callable(unwrap) else self._predictor

    def input_example(self) -> Any:
        """The input example saved with the model, or None."""
        info = self.metadata.saved_input_example_info
        if info is None:
            return None
        signature = self.metadata.signature
        return load_example(self.model_dir, info, signature.inputs if signature else None)

    def __repr__(self) -> str:
        flavors = ", ".join(self.metadata.flavors)
        return f"PyFuncModel(flavors=[{flavors}], run_id={self.metadata.run_id!r})"


def copy_code_paths(
    code_paths: Sequence[str | os.PathLike[str]] | None, model_dir: str
) -> str | None:
    """Copies each file or directory of ``code_paths`` into ``<model_dir>/code`` (the
    python_function flavor's ``code``, put on sys.path by the loader); returns "code", or
    None when there are none."""
    if not code_paths:
        return None
    target = os.path.join(model_dir, CODE_DIR)
    os.makedirs(target, exist_ok=True)
    for source in [os.fspath(p) for p in code_paths]:
        destination = os.path.join(target, os.path.basename(source.rstrip(os.sep)))
        if os.path.isdir(source):
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            shutil.copy2(source, destination)
    return CODE_DIR


def add_code_to_path(model_dir: str, settings: dict[str, Any]) -> None:
    """Puts a flavor's ``code`` directory (when it has one) first on sys.path, as MLflow's
    loader does, so the model's pickled classes import."""
    code = settings.get("code")
    if code:
        path = os.path.join(model_dir, code)
        if path not in sys.path:
            sys.path.insert(0, path)
