"""Helpers of the model tests: a small trained classifier, a custom PythonModel, and MLflow
run in a subprocess, with or without Trackline importable."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from typing import Any

import trackline.pyfunc


def iris() -> tuple[Any, Any]:
    """The iris data set (bundled with scikit-learn): a DataFrame of four double columns,
    and the classes."""
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]

    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns=["target"])
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return frame, data.target.to_numpy()


def trained_classifier() -> tuple[Any, Any]:
    """A LogisticRegression fitted on iris, and its training frame."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    frame, target = iris()
    return LogisticRegression(max_iter=500).fit(frame, target), frame


class Scaler(trackline.pyfunc.PythonModel):
    """A PythonModel multiplying column ``x`` by the ``factor`` parameter, plus the offset
    its ``load_context`` reads from its ``offset`` artifact."""

    def __init__(self) -> None:
        self.offset = 0.0

    def load_context(self, context: trackline.pyfunc.PythonModelContext) -> None:
        path = context.artifacts.get("offset")
        if path is not None:
            with open(path, encoding="utf-8") as f:
                self.offset = float(f.read())

    def predict(
        self,
        context: trackline.pyfunc.PythonModelContext,
        model_input: Any,
        params: dict[str, Any] | None = None,
    ) -> Any:
        factor = (params or {}).get("factor", 1.0)
        return (model_input["x"] * factor + self.offset).to_numpy()


def run_python(code: str, *, trackline_importable: bool) -> str:
    """Runs ``code`` in a new interpreter of this virtualenv and returns its output.
    Without ``trackline_importable`` it starts isolated, with no site processing, and
    sees only the site-packages directory: the editable install of Trackline (a .pth
    finder) never loads, so ``import trackline`` fails there while mlflow imports. It runs
    in the repository's root, so with Trackline importable ``tests.support`` is too."""
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    env.pop("PYTHONPATH", None)
    if trackline_importable:
        argv = [sys.executable, "-c", code]
    else:
        site_packages = sysconfig.get_paths()["purelib"]
        prelude = f"import sys; sys.path.append({site_packages!r})\n"
        argv = [sys.executable, "-I", "-S", "-c", prelude + code]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=180, check=False, cwd=root
    )
    assert done.returncode == 0, f"the subprocess failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
