"""The MLproject file, read as MLflow reads it and checked before anything runs.

A project is a folder. Its ``MLproject`` file (the name matched case-insensitively) holds a
``name``, ``entry_points`` (each a ``command`` template and ``parameters``: a bare type or
``{type, default}``, types ``string``, ``float``, ``int``, ``path``, ``uri``) and at most one
environment: ``python_env`` (a python_env.yaml), ``conda_env`` (a conda.yaml) or ``docker_env``
(``image``, ``volumes``, ``environment``). A folder without the file, or a file without an
environment, uses ``python_env.yaml`` or else ``conda.yaml`` when the folder has one (MLflow's
rules). An entry point not in the file that names a ``.py`` or ``.sh`` file of the project runs
that file. Unlike MLflow, every field is checked here: a malformed file raises ``ProjectError``
naming the file, the field and what was expected.
"""

from __future__ import annotations

import logging
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .errors import ProjectError

MLPROJECT = "mlproject"  # matched case-insensitively
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
PARAM_TYPES = ("string", "float", "int", "path", "uri")
_ENV_FIELDS = ("python_env", "conda_env", "docker_env")
_KNOWN_FIELDS = {"name", "entry_points", *_ENV_FIELDS}
_SCRIPT_RUNNERS = {".py": "python", ".sh": "bash"}

EnvKind = Literal["python", "conda", "docker", "none"]
logger = logging.getLogger("trackline.projects")


@dataclass(frozen=True)
class Parameter:
    """A declared parameter; ``default`` None means the value is required."""

    name: str
    type: str = "string"
    default: str | None = None


@dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str  # a str.format template over the parameters' names
    parameters: dict[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True)
class DockerEnv:
    """``docker_env``: the image, ``host:container`` volumes, and environment variables, each
    a name to copy from the host (a str) or a (name, value) pair."""

    image: str
    volumes: tuple[str, ...] = ()
    environment: tuple[str | tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Project:
    directory: Path
    spec_file: Path | None  # the MLproject file, None for a folder without one
    name: str | None
    entry_points: dict[str, EntryPoint]
    env_kind: EnvKind  # "none": no environment declared or found
    env_file: Path | None = None  # python_env.yaml or conda.yaml
    docker_env: DockerEnv | None = None

    def entry_point(self, name: str) -> EntryPoint:
        """The entry point ``name``, or one that runs the project's ``.py`` or ``.sh`` file of
        that name; ProjectError when it is neither."""
        if name in self.entry_points:
            return self.entry_points[name]
        runner = _SCRIPT_RUNNERS.get(Path(name).suffix)
        script = (self.directory / name).resolve()
        if runner and script.is_file() and script.is_relative_to(self.directory.resolve()):
            return EntryPoint(name, f"{runner} {shlex.quote(name)}")
        where = f"in {self.spec_file}" if self.spec_file else f"({self.directory} has no MLproject)"
        declared = ", ".join(sorted(self.entry_points)) or "none"
        raise ProjectError(
            f"unknown entry point {name!r} {where}: expected one of the entry points ({declared})"
            " or a .py or .sh file of the project"
        )


def find_spec_file(directory: Path) -> Path | None:
    """The folder's MLproject file, its name in any case; None when it has none."""
    for child in sorted(directory.iterdir()):
        if child.name.lower() == MLPROJECT and child.is_file():
            return child
    return None


def load_project(directory: Path) -> Project:
    """The project in ``directory`` (see the module's docstring)."""
    if not directory.is_dir():
        raise ProjectError(f"{directory}: not a folder")
    spec_file = find_spec_file(directory)
    doc = _read_yaml(spec_file) if spec_file else {}
    where = str(spec_file)
    if not isinstance(doc, dict):
        raise ProjectError(f"{where}: expected a mapping of fields, got {_kind(doc)}")
    unknown = sorted(str(k) for k in doc if k not in _KNOWN_FIELDS)
    if unknown:
        logger.warning("%s: ignoring unknown fields %s", where, ", ".join(unknown))
    envs = [k for k in _ENV_FIELDS if k in doc]
    if len(envs) > 1:
        raise ProjectError(f"{where}: expected at most one environment, got {' and '.join(envs)}")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise ProjectError(f"{where}: field 'name': expected a string, got {_kind(name)}")
    entry_points = _entry_points(where, doc.get("entry_points", {}))
    env_kind, env_file = _environment(directory, where, doc)
    docker = _docker_env(where, doc["docker_env"]) if env_kind == "docker" else None
    return Project(directory, spec_file, name, entry_points, env_kind, env_file, docker)


def _environment(
    directory: Path, where: str, doc: dict[object, object]
) -> tuple[EnvKind, Path | None]:
    """The environment the file declares, else the python_env.yaml or conda.yaml found."""
    if "docker_env" in doc:
        return "docker", None
    if "python_env" in doc:
        return "python", _env_file(directory, where, "python_env", doc["python_env"])
    if "conda_env" in doc:
        return "conda", _env_file(directory, where, "conda_env", doc["conda_env"])
    if (directory / PYTHON_ENV_FILE).is_file():
        return "python", directory / PYTHON_ENV_FILE
    if (directory / CONDA_ENV_FILE).is_file():
        return "conda", directory / CONDA_ENV_FILE
    return "none", None


def _read_yaml(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ProjectError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ProjectError(f"{path}: cannot be read: {err}") from err


def _entry_points(where: str, raw: object) -> dict[str, EntryPoint]:
    if not isinstance(raw, dict):
        raise ProjectError(f"{where}: field 'entry_points': expected a mapping, got {_kind(raw)}")
    found: dict[str, EntryPoint] = {}
    for name, body in raw.items():
        here = f"{where}: entry point {name!r}"
        if not isinstance(name, str) or not name:
            raise ProjectError(f"{where}: field 'entry_points': expected names, got {name!r}")
        if not isinstance(body, dict):
            raise ProjectError(f"{here}: expected a mapping with 'command', got {_kind(body)}")
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ProjectError(f"{here}: field 'command': expected a string, got {_kind(command)}")
        params_raw = body.get("parameters") or {}
        if not isinstance(params_raw, dict):
            raise ProjectError(
                f"{here}: field 'parameters': expected a mapping, got {_kind(params_raw)}"
            )
        params = {str(k): _parameter(here, str(k), v) for k, v in params_raw.items()}
        _check_template(here, command, params)
        found[name] = EntryPoint(name, command, params)
    return found


def _parameter(where: str, name: str, raw: object) -> Parameter:
    here = f"{where}: parameter {name!r}"
    if isinstance(raw, str):
        kind, default = raw, None
    elif isinstance(raw, dict):
        kind = raw.get("type", "string")
        default = raw.get("default")
    else:
        raise ProjectError(f"{here}: expected a type or {{type, default}}, got {_kind(raw)}")
    if kind not in PARAM_TYPES:
        raise ProjectError(
            f"{here}: field 'type': expected one of {', '.join(PARAM_TYPES)}, got {kind!r}"
        )
    if isinstance(default, (dict, list)):
        raise ProjectError(
            f"{here}: field 'default': expected a single value, got {_kind(default)}"
        )
    text = None if default is None else _yaml_scalar(default)
    if text is not None and kind in ("float", "int"):
        check_number(here + ": field 'default'", kind, text)
    return Parameter(name, str(kind), text)


def check_number(where: str, kind: str, value: str) -> None:
    """ProjectError unless ``value`` reads as a ``kind`` ("float" or "int")."""
    try:
        float(value) if kind == "float" else int(value)
    except ValueError:
        article = "an" if kind == "int" else "a"
        raise ProjectError(f"{where}: expected {article} {kind}, got {value!r}") from None


def _yaml_scalar(value: object) -> str:
    """A YAML default as the command will see it (``true``, not Python's ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_template(where: str, command: str, params: dict[str, Parameter]) -> None:
    """The command's ``{name}`` fields must be parameters, without conversion or format."""
    try:
        fields = [
            (f, spec, conv)
            for _, f, spec, conv in string.Formatter().parse(command)
            if f is not None
        ]
    except ValueError as err:
        raise ProjectError(
            f"{where}: field 'command': not a valid template ({err}); write a literal brace"
            " as {{ or }}"
        ) from None
    for name, spec, conv in fields:
        if name not in params:
            raise ProjectError(
                f"{where}: field 'command': {{{name}}} is not among the parameters"
                f" ({', '.join(params) or 'none declared'})"
            )
        if spec or conv:
            raise ProjectError(
                f"{where}: field 'command': expected {{{name}}}, without a conversion or format"
            )


def _env_file(directory: Path, where: str, key: str, raw: object) -> Path:
    if not isinstance(raw, str) or not raw:
        raise ProjectError(f"{where}: field {key!r}: expected a file name, got {_kind(raw)}")
    path = directory / raw
    if not path.is_file():
        raise ProjectError(
            f"{where}: field {key!r}: expected a file of the project, {path} does not exist"
        )
    return path


def _docker_env(where: str, raw: object) -> DockerEnv:
    here = f"{where}: field 'docker_env'"
    if not isinstance(raw, dict):
        raise ProjectError(f"{here}: expected a mapping with 'image', got {_kind(raw)}")
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise ProjectError(f"{here}: field 'image': expected an image name, got {_kind(image)}")
    volumes = raw.get("volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, str) and v for v in volumes):
        raise ProjectError(f"{here}: field 'volumes': expected a list of 'host:container' strings")
    items = raw.get("environment") or []
    if not isinstance(items, list):
        raise ProjectError(f"{here}: field 'environment': expected a list, got {_kind(items)}")
    environment: list[str | tuple[str, str]] = []
    for item in items:
        if isinstance(item, str) and item:
            environment.append(item)
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
            environment.append((item[0], item[1]))
        else:
            raise ProjectError(
                f"{here}: field 'environment': expected names to copy from the host or"
                f" [name, value] pairs, got {item!r}"
            )
    return DockerEnv(image, tuple(volumes), tuple(environment))


def _kind(value: object) -> str:
    """What a YAML value is, for an error message."""
    if value is None:
        return "nothing"
    names = {
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)
