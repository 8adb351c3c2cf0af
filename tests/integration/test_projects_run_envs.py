"""Projects in environments built by uv and virtualenv (from a python_env.yaml, and from a
conda.yaml's python and pip parts), with a local wheel as the dependency so that nothing is
downloaded; the second run reuses the environment instead of building it again."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from pathlib import Path

import pytest
from trackline import TracklineClient
from trackline.projects import ProjectError, execute

from tests.support.projects import make_wheel, python_env_yaml, write_project
from tests.support.servers import ServerProcess, start_server

SHOW = "import sys, tlgreet\nprint('prefix', sys.prefix)\nprint(tlgreet.greet())\n"


@pytest.fixture
def tracking(tmp_path: Path) -> ServerProcess:
    return start_server(tmp_path / "server")


@pytest.fixture
def client(tracking: ServerProcess) -> Iterator[TracklineClient]:
    c = TracklineClient(tracking.address, retry_seconds=5)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def env_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "envs"
    monkeypatch.setenv("TRACKLINE_ENV_CACHE", str(cache))
    return cache


def _project(directory: Path, env_file: str, text: str) -> Path:
    write_project(directory, {env_file: text, "show.py": SHOW})
    make_wheel(directory, "tlgreet", "1.0", "def greet():\n    return 'hello from the wheel'\n")
    return directory


def _run(client: TracklineClient, project: Path, manager: str) -> tuple[str, list[str]]:
    lines: list[str] = []
    result = execute(
        client, str(project), entry_point="show.py", env_manager=manager, on_output=lines.append
    )
    assert result.status == "FINISHED", "\n".join(lines)
    tags = {t.key: t.value for t in client.get_run(result.run_id).tags}
    assert tags["trackline.project.env_manager"] == manager
    return result.run_id, lines


@pytest.mark.parametrize("manager", ["uv", "virtualenv"])
def test_python_env_is_built_once_and_reused(
    client: TracklineClient, tmp_path: Path, env_cache: Path, manager: str
) -> None:
    project = _project(
        tmp_path / "p", "python_env.yaml", python_env_yaml(["./tlgreet-1.0-py3-none-any.whl"])
    )
    _, lines = _run(client, project, manager)
    (env_dir,) = [p for p in env_cache.iterdir() if p.is_dir()]
    assert env_dir.name.startswith(f"{manager}-")
    assert f"prefix {env_dir}" in lines and "hello from the wheel" in lines
    assert any(line.startswith("trackline: building the environment") for line in lines)
    built = (env_dir / "bin" / "python").lstat()
    _, again = _run(client, project, manager)
    assert f"prefix {env_dir}" in again
    assert f"trackline: using the environment {env_dir}" in again
    assert not any("building" in line for line in again)
    after = (env_dir / "bin" / "python").lstat()
    assert (after.st_ino, after.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)


def test_conda_yaml_through_uv(client: TracklineClient, tmp_path: Path) -> None:
    conda = (
        f"name: demo\ndependencies:\n  - python={platform.python_version()}\n  - libgfortran\n"
        "  - pip:\n    - ./tlgreet-1.0-py3-none-any.whl\n"
    )
    project = _project(tmp_path / "p", "conda.yaml", conda)
    _, lines = _run(client, project, "uv")
    assert "hello from the wheel" in lines
    assert any(
        "warning: conda.yaml: the conda packages libgfortran are not installed" in line
        for line in lines
    )


def test_failed_build_ends_the_run_failed(client: TracklineClient, tmp_path: Path) -> None:
    project = _project(tmp_path / "p", "python_env.yaml", python_env_yaml(["./missing.whl"]))
    lines: list[str] = []
    result = execute(
        client, str(project), entry_point="show.py", env_manager="uv", on_output=lines.append
    )
    assert result.status == "FAILED" and result.exit_code != 0
    assert any("installing the dependencies failed" in line for line in lines)


def test_docker_project_without_engine_creates_no_run(
    client: TracklineClient, tmp_path: Path
) -> None:
    project = write_project(
        tmp_path / "p", {"MLproject": "docker_env: {image: 'python:3.11'}\n", "t.py": ""}
    )
    with pytest.raises(ProjectError, match="docker_env, but"):
        execute(client, str(project), entry_point="t.py")
    assert list(client.search_runs(["0"])) == []
