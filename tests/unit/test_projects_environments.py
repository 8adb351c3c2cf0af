"""Environments chosen before the run: python_env.yaml and conda.yaml read, managers that are
not installed refused with the alternatives, the docker invocation, and conda driven through
a stand-in ``conda`` command."""

from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

import pytest
from trackline.projects import ProjectError, load_project
from trackline.projects import environments as envs
from trackline.projects.docker import DockerRun
from trackline.projects.process import ProcessRunner
from trackline.projects.pythonenv import read_conda_env, read_python_env
from trackline.projects.spec import DockerEnv

from tests.support.projects import python_env_yaml, write_project


def test_python_env_yaml(tmp_path: Path) -> None:
    path = tmp_path / "python_env.yaml"
    path.write_text(
        "python: '3.10.4'\nbuild_dependencies: [pip]\ndependencies: ['numpy>=1', '-r req.txt']\n"
    )
    spec = read_python_env(path)
    assert (spec.python, spec.build_dependencies, spec.dependencies) == (
        "3.10.4",
        ("pip",),
        ("numpy>=1", "-r req.txt"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "python: 3.10\n",
            'expected a version in quotes ("3.1"): YAML reads an unquoted 3.1 as a number',
        ),
        ("python: three\n", "field 'python': expected a version such as \"3.11\", got 'three'"),
        (
            "dependencies: numpy\n",
            "field 'dependencies': expected a list of requirements (strings)",
        ),
        (
            "build_dependencies: [1]\n",
            "field 'build_dependencies': expected a list of requirements",
        ),
        ("[1, 2]\n", "expected a mapping of fields"),
        ("python: [\n", "not valid YAML"),
    ],
)
def test_malformed_python_env(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "python_env.yaml"
    path.write_text(text)
    with pytest.raises(ProjectError) as caught:
        read_python_env(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_conda_yaml_python_and_pip_parts(tmp_path: Path) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text(
        "name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.11.7\n  - pip=23.1\n"
        "  - cudatoolkit=11.8\n  - numpy\n  - pip: ['requests==2.31']\n"
    )
    spec = read_conda_env(path)
    assert (spec.python, spec.build_dependencies, spec.dependencies) == (
        "3.11.7",
        ("pip==23.1",),
        ("requests==2.31",),
    )
    assert any(
        "cudatoolkit=11.8, numpy are not installed by uv or virtualenv" in w for w in spec.warnings
    )


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        ("[python]", "expected python pinned to a version"),
        ("[python>3.8]", "expected python pinned"),
        ("[{conda: x}]", "expected a package or {pip: [...]}"),
        ("python", "field 'dependencies': expected a list"),
    ],
)
def test_malformed_conda_yaml(tmp_path: Path, deps: str, message: str) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text(f"dependencies: {deps}\n")
    with pytest.raises(ProjectError, match=message.replace("[", r"\[").replace("{", r"\{")):
        read_conda_env(path)


def test_conda_yaml_without_python_uses_this_one(tmp_path: Path) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text("dependencies: [{pip: []}]\n")
    spec = read_conda_env(path)
    assert spec.python == platform.python_version() and "pins no python version" in spec.warnings[0]


def test_default_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = write_project(tmp_path / "bare", {"t.py": ""})
    declared = write_project(tmp_path / "declared", {"python_env.yaml": python_env_yaml()})
    assert envs.plan_environment(load_project(bare), None).manager == "local"
    assert envs.plan_environment(load_project(declared), None).manager == "uv"
    monkeypatch.setattr(envs, "find_uv", lambda: None)
    assert envs.plan_environment(load_project(declared), None).manager == "virtualenv"
    with pytest.raises(
        ProjectError, match="uv is not installed .*use --env-manager virtualenv or local"
    ):
        envs.plan_environment(load_project(declared), "uv")


def test_unknown_manager(tmp_path: Path) -> None:
    with pytest.raises(
        ProjectError, match="--env-manager 'pipenv': expected one of local, uv, virtualenv, conda"
    ):
        envs.plan_environment(load_project(write_project(tmp_path, {"t.py": ""})), "pipenv")


def test_python_not_installed(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, {"python_env.yaml": "python: '2.7.18'\n"}))
    with pytest.raises(
        ProjectError,
        match=r"python_env.yaml asks for Python 2.7.18, which is not installed here .*"
        r"or use --env-manager local",
    ):
        envs.plan_environment(project, "virtualenv")


def test_conda_missing_names_the_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project = load_project(write_project(tmp_path / "p", {"conda.yaml": "dependencies: []\n"}))
    with pytest.raises(
        ProjectError,
        match="neither conda nor mamba is installed .* use --env-manager uv or virtualenv"
        " .* or local",
    ):
        envs.plan_environment(project, "conda")


def test_conda_refuses_python_env(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, {"python_env.yaml": python_env_yaml()}))
    with pytest.raises(ProjectError, match="is a python_env, which conda does not build"):
        envs.plan_environment(project, "conda")


def test_conda_builds_once_through_its_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in conda records its arguments and makes the prefix; the second plan reuses it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "conda"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\n'
        'while [ "$1" != "--prefix" ]; do shift; done\nmkdir -p "$2/bin"\necho created\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TRACKLINE_ENV_CACHE", str(tmp_path / "cache"))
    project = load_project(
        write_project(tmp_path / "p", {"conda.yaml": "dependencies: [python=3.11]\n"})
    )
    lines: list[str] = []
    for _ in range(2):
        plan = envs.plan_environment(project, "conda")
        env = envs.build_environment(
            plan, ProcessRunner(lambda _s, line: lines.append(line)), os.environ
        )
    prefix = plan.directory
    assert prefix is not None and prefix.parent == tmp_path / "cache"
    assert calls.read_text().splitlines() == [
        f"env create --quiet --prefix {prefix} --file {project.env_file}"
    ]
    assert env.bin_dirs == (str(prefix / "bin"),) and env.variables == {"CONDA_PREFIX": str(prefix)}
    assert "created" in lines and any("using the environment" in line for line in lines)


def test_failed_build_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "conda"
    fake.write_text(
        '#!/bin/sh\nwhile [ "$1" != "--prefix" ]; do shift; done\nmkdir -p "$2"\n'
        "echo broken >&2\nexit 7\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TRACKLINE_ENV_CACHE", str(tmp_path / "cache"))
    project = load_project(write_project(tmp_path / "p", {"conda.yaml": "dependencies: []\n"}))
    plan = envs.plan_environment(project, "conda")
    with pytest.raises(envs.BuildFailed, match="conda env failed \\(exit status 7\\)") as caught:
        envs.build_environment(plan, ProcessRunner(lambda _s, _l: None), os.environ)
    assert caught.value.exit_code == 7
    assert plan.directory is not None and not plan.directory.exists()


def test_environment_key_follows_what_it_is_made_of(tmp_path: Path) -> None:
    project_dir = write_project(
        tmp_path, {"python_env.yaml": python_env_yaml(["-r req.txt"]), "req.txt": "a\n"}
    )
    key = envs.plan_environment(load_project(project_dir), "uv").key()
    assert envs.plan_environment(load_project(project_dir), "uv").key() == key
    assert envs.plan_environment(load_project(project_dir), "virtualenv").key() != key
    (project_dir / "req.txt").write_text("b\n")
    assert envs.plan_environment(load_project(project_dir), "uv").key() != key


def test_docker_invocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME_TOKEN", "secret-value")
    run = DockerRun(
        DockerEnv("python:3.11-slim", ("/data:/data:ro",), (("MODE", "a b"), "HOME_TOKEN"))
    )
    env = {
        "TRACKLINE_URI": "127.0.0.1:5005",
        "TRACKLINE_RUN_ID": "r1",
        "TRACKLINE_EXPERIMENT_ID": "3",
        "TRACKLINE_EXPERIMENT": "exp",
        "TRACKLINE_TOKEN": "tok",
        "HOME_TOKEN": "secret-value",
        "PATH": "/usr/bin",
    }
    argv, docker_env = run.argv("python train.py --alpha 0.1", env, tmp_path)
    assert argv == [
        "docker", "run", "--rm", "--init", "--name", "trackline-r1",
        "--network", "host",
        "-v", f"{tmp_path}:/trackline/project", "-w", "/trackline/project",
        "-v", "/data:/data:ro",
        "-e", "TRACKLINE_URI", "-e", "TRACKLINE_RUN_ID", "-e", "TRACKLINE_EXPERIMENT_ID",
        "-e", "TRACKLINE_EXPERIMENT", "-e", "TRACKLINE_TOKEN",
        "-e", "MODE=a b", "-e", "HOME_TOKEN",
        "python:3.11-slim", "sh", "-c", "python train.py --alpha 0.1",
    ]  # fmt: skip
    assert "tok" not in " ".join(argv) and docker_env["TRACKLINE_TOKEN"] == "tok"


@pytest.mark.parametrize(
    ("uri", "host_network"),
    [
        ("localhost:1", True),
        ("[::1]:5", True),
        ("grpcs://tracking.example.com", False),
        ("10.0.0.5:50051", False),
    ],
)
def test_docker_network_reaches_the_server(tmp_path: Path, uri: str, host_network: bool) -> None:
    argv, _ = DockerRun(DockerEnv("img")).argv("true", {"TRACKLINE_URI": uri}, tmp_path)
    assert ("--network" in argv) is host_network


def test_docker_without_engine_is_a_clear_error(tmp_path: Path) -> None:
    project = load_project(
        write_project(
            tmp_path,
            {"MLproject": "docker_env: {image: img}\nentry_points: {main: {command: x}}\n"},
        )
    )
    with pytest.raises(
        ProjectError,
        match=r"docker_env, but (no Docker engine answers `docker info`|docker is not installed)",
    ):
        envs.plan_environment(project, None)


def test_docker_host_variable_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    project = load_project(
        write_project(
            tmp_path, {"MLproject": "docker_env: {image: img, environment: [NOT_SET_HERE]}\n"}
        )
    )
    with pytest.raises(ProjectError, match="expected NOT_SET_HERE to be set here"):
        envs.plan_environment(project, None)


def test_docker_refuses_an_env_manager(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, {"MLproject": "docker_env: {image: img}\n"}))
    with pytest.raises(ProjectError, match="runs in its docker_env image"):
        envs.plan_environment(project, "uv")


def test_uv_without_the_python_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UV_PYTHON_DOWNLOADS", raising=False)
    project = load_project(write_project(tmp_path, {"python_env.yaml": "python: '3.4.1'\n"}))
    with pytest.raises(
        ProjectError,
        match=r"asks for Python 3.4.1, which uv does not find here .*UV_PYTHON_DOWNLOADS=automatic",
    ):
        envs.plan_environment(project, "uv")
