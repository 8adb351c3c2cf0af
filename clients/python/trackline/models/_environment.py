"""The environment files of a model directory, as MLflow writes them: ``requirements.txt``,
``python_env.yaml`` (for virtualenv) and ``conda.yaml``."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import metadata

from ._deps import require

REQUIREMENTS_FILE = "requirements.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"


def python_version() -> str:
    return ".".join(str(n) for n in sys.version_info[:3])


def pinned(distribution: str) -> str:
    """``distribution==<installed version>``, or the bare name when it is not installed."""
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def pip_requirements_of(
    given: Sequence[str] | str | os.PathLike[str] | None, default: list[str]
) -> list[str]:
    """The requirements to write: ``given`` (a list, or the path of a requirements file)
    or else ``default``."""
    if given is None:
        return list(default)
    if isinstance(given, str | os.PathLike):
        with open(given, encoding="utf-8") as f:
            lines = (line.strip() for line in f)
            return [line for line in lines if line and not line.startswith("#")]
    return [str(r) for r in given]


def write_environment(model_dir: str, requirements: list[str]) -> dict[str, str]:
    """Writes the three environment files into ``model_dir``; returns the python_function
    flavor's ``env`` entry naming them."""
    yaml = require("yaml", "PyYAML", extra="models")
    with open(os.path.join(model_dir, REQUIREMENTS_FILE), "w", encoding="utf-8") as f:
        f.write("\n".join(requirements))
    build = [pinned("pip"), pinned("setuptools"), "wheel"]
    python_env = {
        "python": python_version(),
        "build_dependencies": build,
        "dependencies": [f"-r {REQUIREMENTS_FILE}"],
    }
    with open(os.path.join(model_dir, PYTHON_ENV_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump(python_env, f, default_flow_style=False, sort_keys=False)
    pip = build[0].replace("==", "<=") if "==" in build[0] else "pip"
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version()}", pip, {"pip": requirements}],
        "name": "trackline-env",
    }
    with open(os.path.join(model_dir, CONDA_ENV_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump(conda, f, default_flow_style=False)
    return {"conda": CONDA_ENV_FILE, "virtualenv": PYTHON_ENV_FILE}
