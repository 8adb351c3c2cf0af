"""The environment a project's command runs in, chosen and checked before the run is created
(``plan_environment``), built once the run exists (``build_environment``, its output part of
the run's log) and cached.

- ``local``: the current interpreter (its folder first on PATH, so ``python`` is this one).
- ``uv`` (the default for a project that declares a Python or conda environment, when uv is
  installed) and ``virtualenv`` (the standard library's venv and pip): a virtual environment
  from the project's python_env.yaml, or from its conda.yaml's python pin and pip packages.
- ``conda`` (conda or mamba on PATH): ``conda env create`` from the conda.yaml.
- ``docker_env`` projects run in their image (``docker.py``).

A built environment lives under ``TRACKLINE_ENV_CACHE`` (default ~/.cache/trackline/envs),
named by a hash of what it is made of (manager, interpreter, dependencies, the contents of the
requirement files they name), and is reused by every later run. A build holds a lock on its
folder and marks it ready last: a build that died half-way is never reused, but removed and
done again, and two processes wanting the same environment build it once. (Building in a
temporary folder and renaming it would break the absolute paths a virtual environment's
scripts hold.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .docker import DockerRun, check_docker_engine, check_host_variables
from .errors import ProjectError
from .process import Cancelled, ProcessRunner
from .pythonenv import (
    PythonEnvSpec,
    current_python,
    find_interpreter,
    read_conda_env,
    read_python_env,
)
from .spec import Project

ENV_MANAGERS = ("local", "uv", "virtualenv", "conda")
_READY = ".trackline-env-ready"


class BuildFailed(ProjectError):
    """A step of building the environment failed; its output is in the run's log."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class EnvironmentPlan:
    """What ``plan_environment`` chose: everything ``build_environment`` needs."""

    manager: str  # local, uv, virtualenv, conda or docker
    project: Project
    spec: PythonEnvSpec | None = None
    tool: str | None = None  # the uv, conda or mamba binary; the base interpreter for virtualenv
    warnings: tuple[str, ...] = ()

    @property
    def directory(self) -> Path | None:
        """Where the environment is cached (None for local and docker)."""
        if self.manager in ("local", "docker"):
            return None
        return env_cache() / f"{self.manager}-{self.key()}"

    def key(self) -> str:
        """The hash naming the environment: what it is built from."""
        spec = self.spec
        files = [self.project.env_file] if self.manager == "conda" and self.project.env_file else []
        files += _requirement_files(self.project.directory, spec) if spec else []
        described = {
            "manager": self.manager,
            "tool": self.tool,
            "python": spec.python if spec else None,
            "build": list(spec.build_dependencies) if spec else [],
            "deps": list(spec.dependencies) if spec else [],
            "files": [_digest(f) for f in files],
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Environment:
    """A built environment: how to turn the command into the argv to run."""

    manager: str
    bin_dirs: tuple[str, ...] = ()  # put first on PATH
    variables: dict[str, str] = field(default_factory=dict)
    docker: DockerRun | None = None

    def argv(
        self, command: str, env: Mapping[str, str], cwd: Path
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment variables that run ``command`` (a shell command line)."""
        if self.docker is not None:
            return self.docker.argv(command, env, cwd)
        merged = {**env, **self.variables}
        if self.bin_dirs:
            merged["PATH"] = os.pathsep.join([*self.bin_dirs, env.get("PATH", os.defpath)])
        return ["bash", "-c", command], merged


def env_cache() -> Path:
    """``TRACKLINE_ENV_CACHE``, else trackline/envs in the user's cache folder."""
    if configured := os.environ.get("TRACKLINE_ENV_CACHE"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trackline" / "envs"


def find_uv() -> str | None:
    """The uv binary: the ``uv`` package's (a pinned dependency), else ``uv`` on PATH."""
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def plan_environment(project: Project, manager: str | None) -> EnvironmentPlan:
    """The environment ``project`` runs in with ``manager`` (None: docker for a docker_env
    project, uv (else virtualenv) for one that declares a Python or conda environment, local
    otherwise); ProjectError when it cannot be built here."""
    if manager is not None and manager not in ENV_MANAGERS:
        raise ProjectError(f"--env-manager {manager!r}: expected one of {', '.join(ENV_MANAGERS)}")
    if project.env_kind == "docker":
        if manager is not None:
            raise ProjectError(
                f"--env-manager {manager}: the project runs in its docker_env image; leave"
                " --env-manager out"
            )
        assert project.docker_env is not None
        check_host_variables(project.docker_env, os.environ)
        check_docker_engine()
        return EnvironmentPlan("docker", project)
    if manager is None:
        manager = "local" if project.env_kind == "none" else "uv" if find_uv() else "virtualenv"
    if manager == "local":
        return EnvironmentPlan("local", project)
    if manager == "conda":
        return _plan_conda(project)
    spec = _python_spec(project)
    if manager == "uv":
        uv = find_uv()
        if uv is None:
            raise ProjectError(
                "--env-manager uv: uv is not installed (pip install uv); or use --env-manager"
                " virtualenv or local"
            )
        _check_uv_python(uv, project, spec.python)
        return EnvironmentPlan("uv", project, spec, uv, spec.warnings)
    interpreter = find_interpreter(spec.python)
    if interpreter is None:
        raise ProjectError(
            f"{_spec_source(project)} asks for Python {spec.python}, which is not installed here"
            f" (this one is {current_python()}): install it, or use --env-manager local"
        )
    return EnvironmentPlan("virtualenv", project, spec, str(interpreter), spec.warnings)


def build_environment(
    plan: EnvironmentPlan, runner: ProcessRunner, base_env: Mapping[str, str]
) -> Environment:
    """Builds (or reuses, from the cache) the environment of ``plan``, every build step's
    output to ``runner``; BuildFailed when a step fails."""
    if plan.manager == "local":
        return Environment("local", (os.path.dirname(sys.executable),))
    if plan.manager == "docker":
        assert plan.project.docker_env is not None
        return Environment("docker", docker=DockerRun(plan.project.docker_env))
    directory = plan.directory
    assert directory is not None
    builders: dict[
        str, Callable[[EnvironmentPlan, Path, ProcessRunner, Mapping[str, str]], None]
    ] = {
        "uv": _build_uv,
        "virtualenv": _build_virtualenv,
        "conda": _build_conda,
    }
    _cached(directory, lambda: builders[plan.manager](plan, directory, runner, base_env), runner)
    variables = (
        {"CONDA_PREFIX": str(directory)}
        if plan.manager == "conda"
        else {"VIRTUAL_ENV": str(directory)}
    )
    return Environment(plan.manager, (str(directory / "bin"),), variables)


def _cached(directory: Path, build: Callable[[], None], runner: ProcessRunner) -> None:
    """Runs ``build`` unless ``directory`` holds a finished environment (see the module's
    docstring); a folder left by a build that failed or died is removed first."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(directory.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            runner.emit("stderr", f"trackline: waiting for another process building {directory}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / _READY).is_file():
            runner.emit("stderr", f"trackline: using the environment {directory}")
            return
        shutil.rmtree(directory, ignore_errors=True)
        runner.emit("stderr", f"trackline: building the environment {directory}")
        try:
            build()
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        (directory / _READY).write_text("built by trackline run\n", encoding="utf-8")


def _step(
    runner: ProcessRunner,
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    what: str,
) -> None:
    """Runs one build step; BuildFailed when it fails, Cancelled when the run was cancelled."""
    code = runner.run(argv, cwd=cwd, env=env)
    if runner.cancelled:
        raise Cancelled
    if code != 0:
        raise BuildFailed(
            f"{what} failed (exit status {code}): {shlex.join(argv)}", code if code > 0 else 1
        )


def _build_uv(
    plan: EnvironmentPlan, directory: Path, runner: ProcessRunner, base: Mapping[str, str]
) -> None:
    assert plan.spec is not None and plan.tool is not None
    env = _uv_env(base)
    cwd = plan.project.directory
    venv = [plan.tool, "venv", "--no-project", "--python", plan.spec.python, str(directory)]
    _step(runner, venv, cwd, env, "uv venv")
    python = str(directory / "bin" / "python")
    for deps, what in (
        (plan.spec.build_dependencies, "build dependencies"),
        (plan.spec.dependencies, "dependencies"),
    ):
        if deps:
            _step(
                runner,
                [plan.tool, "pip", "install", "--python", python, *_pip_args(deps)],
                cwd,
                env,
                f"installing the {what}",
            )


def _build_virtualenv(
    plan: EnvironmentPlan, directory: Path, runner: ProcessRunner, base: Mapping[str, str]
) -> None:
    assert plan.spec is not None and plan.tool is not None
    env = {k: v for k, v in base.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    cwd = plan.project.directory
    _step(runner, [plan.tool, "-m", "venv", str(directory)], cwd, env, "python -m venv")
    pip = [str(directory / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    for deps, what in (
        (plan.spec.build_dependencies, "build dependencies"),
        (plan.spec.dependencies, "dependencies"),
    ):
        if deps:
            _step(runner, [*pip, *_pip_args(deps)], cwd, env, f"installing the {what}")


def _build_conda(
    plan: EnvironmentPlan, directory: Path, runner: ProcessRunner, base: Mapping[str, str]
) -> None:
    assert plan.tool is not None
    cwd = plan.project.directory
    if plan.project.env_file is not None:
        argv = [
            plan.tool,
            "env",
            "create",
            "--quiet",
            "--prefix",
            str(directory),
            "--file",
            str(plan.project.env_file),
        ]
    else:
        python = ".".join(current_python().split(".")[:2])
        argv = [
            plan.tool,
            "create",
            "--quiet",
            "--yes",
            "--prefix",
            str(directory),
            f"python={python}",
        ]
    _step(runner, argv, cwd, base, f"{Path(plan.tool).name} {argv[1]}")


def _uv_env(base: Mapping[str, str]) -> dict[str, str]:
    """uv's environment: no virtual environment of ours in the way, and no download of a
    Python unless UV_PYTHON_DOWNLOADS asks for one (there may be no internet)."""
    env = {k: v for k, v in base.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = base.get("UV_PYTHON_DOWNLOADS", "never")
    return env


def _check_uv_python(uv: str, project: Project, version: str) -> None:
    """ProjectError when uv finds no Python ``version`` and may not download one."""
    env = _uv_env(os.environ)
    if env["UV_PYTHON_DOWNLOADS"] != "never":
        return
    try:
        done = subprocess.run(
            [uv, "python", "find", "--no-project", version],
            capture_output=True,
            env=env,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise ProjectError(f"--env-manager uv: {uv} does not run: {err}") from err
    if done.returncode != 0:
        raise ProjectError(
            f"{_spec_source(project)} asks for Python {version}, which uv does not find here"
            f" (this one is {current_python()}): install it (uv python install {version}, or"
            " set UV_PYTHON_DOWNLOADS=automatic to let uv download it), or use --env-manager"
            " local"
        )


def _plan_conda(project: Project) -> EnvironmentPlan:
    if project.env_kind == "python":
        raise ProjectError(
            f"--env-manager conda: {_spec_source(project)} is a python_env, which conda does not"
            " build; use --env-manager uv, virtualenv or local"
        )
    tool = shutil.which("conda") or shutil.which("mamba")
    if tool is None:
        raise ProjectError(
            "--env-manager conda: neither conda nor mamba is installed (on PATH); install one,"
            " or use --env-manager uv or virtualenv (they build the conda.yaml's python and pip"
            " packages) or local"
        )
    return EnvironmentPlan("conda", project, tool=tool)


def _python_spec(project: Project) -> PythonEnvSpec:
    if project.env_kind == "python" and project.env_file is not None:
        return read_python_env(project.env_file)
    if project.env_kind == "conda" and project.env_file is not None:
        return read_conda_env(project.env_file)
    return PythonEnvSpec(current_python())


def _spec_source(project: Project) -> str:
    if project.env_file is not None:
        return str(project.env_file)
    return str(project.spec_file or project.directory)


def _pip_args(deps: tuple[str, ...]) -> list[str]:
    """Requirements as pip arguments: an option line (``-r file``, ``--index-url u``) split
    into its words, a requirement (markers and all) kept as one."""
    args: list[str] = []
    for dep in deps:
        args += shlex.split(dep) if dep.lstrip().startswith("-") else [dep.strip()]
    return args


def _requirement_files(directory: Path, spec: PythonEnvSpec) -> list[Path]:
    """The files the requirements name with -r, -c or as a local path (a wheel)."""
    found: list[Path] = []
    args = _pip_args(spec.build_dependencies + spec.dependencies)
    for i, arg in enumerate(args):
        name = (
            args[i + 1]
            if arg in ("-r", "--requirement", "-c", "--constraint") and i + 1 < len(args)
            else arg
        )
        path = directory / os.path.expanduser(name)
        if path.is_file():
            found.append(path)
    return found


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"
