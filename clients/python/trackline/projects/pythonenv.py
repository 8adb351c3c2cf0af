"""What a Python environment is made of, read from a ``python_env.yaml`` (``python``,
``build_dependencies``, ``dependencies``) or from a ``conda.yaml`` (its ``python`` pin and its
``pip`` list; MLflow's rules), and the interpreters that can build it."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ProjectError

# conda packages uv and pip install too (MLflow's list); the others are left out, with a warning
_CONDA_DEPENDENCY = re.compile(
    r"^(?P<package>python|pip|setuptools|wheel)(?P<op><=|>=|==|=|<|>|!=)?(?P<version>[\d.]+)?$"
)


@dataclass(frozen=True)
class PythonEnvSpec:
    python: str  # a version: "3.11" or "3.11.7"
    build_dependencies: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)


def current_python() -> str:
    return platform.python_version()


def read_python_env(path: Path) -> PythonEnvSpec:
    """The spec of a python_env.yaml; the current Python's version when it names none."""
    doc = _read(path)
    python = doc.get("python", current_python())
    if isinstance(python, float):
        raise ProjectError(
            f"{path}: field 'python': expected a version in quotes (\"{python}\"): YAML reads"
            f" an unquoted {python} as a number"
        )
    if not isinstance(python, (str, float, int)) or not _is_version(str(python)):
        raise ProjectError(
            f"{path}: field 'python': expected a version such as \"3.11\", got {python!r}"
        )
    return PythonEnvSpec(
        str(python), _strings(path, doc, "build_dependencies"), _strings(path, doc, "dependencies")
    )


def read_conda_env(path: Path) -> PythonEnvSpec:
    """The Python part of a conda.yaml: its pinned python, pip/setuptools/wheel as build
    dependencies, its ``pip`` list; other conda packages are left out, with a warning."""
    doc = _read(path)
    deps = doc.get("dependencies") or []
    if not isinstance(deps, list):
        raise ProjectError(f"{path}: field 'dependencies': expected a list")
    python: str | None = None
    build: list[str] = []
    pip: tuple[str, ...] = ()
    conda_only: list[str] = []
    for dep in deps:
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            pip = _strings(path, dep, "pip")
        elif isinstance(dep, str):
            match = _CONDA_DEPENDENCY.match(dep.replace(" ", ""))
            if match is None:
                conda_only.append(dep)
            elif match["package"] == "python":
                if match["op"] not in ("=", "==", "<=", ">=") or not match["version"]:
                    raise ProjectError(
                        f"{path}: dependency {dep!r}: expected python pinned to a version"
                        " (python=3.11)"
                    )
                python = match["version"]
            else:
                op = "==" if match["op"] == "=" else match["op"] or ""
                build.append(match["package"] + op + (match["version"] or ""))
        else:
            raise ProjectError(f"{path}: dependency {dep!r}: expected a package or {{pip: [...]}}")
    warnings = []
    if python is None:
        python = current_python()
        warnings.append(f"{path.name} pins no python version; using this Python's, {python}")
    if conda_only:
        warnings.append(
            f"{path.name}: the conda packages {', '.join(conda_only)} are not installed by"
            " uv or virtualenv (list them under pip:, or use --env-manager conda)"
        )
    return PythonEnvSpec(python, tuple(build), pip, tuple(warnings))


def find_interpreter(version: str) -> Path | None:
    """A Python of ``version`` on this machine (this one first, then python3.X on PATH)."""
    if _matches(version, current_python()):
        return Path(sys.executable)
    minor = ".".join(version.split(".")[:2])
    for name in (f"python{minor}", "python3"):
        found = shutil.which(name)
        if found and _matches(version, _version_of(found)):
            return Path(found)
    return None


def _version_of(executable: str) -> str:
    try:
        done = subprocess.run(
            [executable, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _matches(requested: str, actual: str) -> bool:
    return actual.split(".")[: len(requested.split("."))] == requested.split(".")


def _is_version(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+){0,2}", text) is not None


def _read(path: Path) -> dict[str, object]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ProjectError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectError(f"{path}: cannot be read: {err}") from err
    if not isinstance(doc, dict):
        raise ProjectError(f"{path}: expected a mapping of fields")
    return doc


def _strings(path: Path, doc: dict[str, object], key: str) -> tuple[str, ...]:
    items = doc.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ProjectError(f"{path}: field {key!r}: expected a list of requirements (strings)")
    return tuple(items)
