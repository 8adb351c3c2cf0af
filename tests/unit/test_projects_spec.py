"""MLproject files: what is read (as MLflow reads it) and every malformed field, refused with
the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from trackline.projects import ProjectError, load_project
from trackline.projects.spec import DockerEnv, Parameter

from tests.support.projects import write_project

FULL = """
    name: demo
    entry_points:
      main:
        parameters:
          alpha: float
          l1_ratio: {type: float, default: 0.5}
          epochs: {type: int, default: 3}
          flag: {default: true}
          data: path
          source: uri
        command: "python train.py {alpha} {l1_ratio}"
      other:
        command: "echo {{literal}}"
    python_env: env.yaml
"""


def test_full_spec_is_read(tmp_path: Path) -> None:
    write_project(tmp_path, {"MLproject": FULL, "env.yaml": "python: '3.11'\n"})
    project = load_project(tmp_path)
    assert project.name == "demo"
    assert project.env_kind == "python" and project.env_file == tmp_path / "env.yaml"
    main = project.entry_point("main")
    assert main.parameters == {
        "alpha": Parameter("alpha", "float", None),
        "l1_ratio": Parameter("l1_ratio", "float", "0.5"),
        "epochs": Parameter("epochs", "int", "3"),
        "flag": Parameter("flag", "string", "true"),  # YAML's true, as the command sees it
        "data": Parameter("data", "path", None),
        "source": Parameter("source", "uri", None),
    }
    assert project.entry_point("other").command == "echo {{literal}}"


@pytest.mark.parametrize("name", ["MLproject", "MLProject", "mlproject", "MLPROJECT"])
def test_file_name_in_any_case(tmp_path: Path, name: str) -> None:
    write_project(tmp_path, {name: "entry_points: {main: {command: 'echo hi'}}\n"})
    assert load_project(tmp_path).entry_point("main").command == "echo hi"


def test_docker_env(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "MLproject": """
                docker_env:
                  image: python:3.11-slim
                  volumes: ["/data:/data"]
                  environment: [["MODE", "train"], "HOME"]
                entry_points: {main: {command: "python x.py"}}
            """
        },
    )
    project = load_project(tmp_path)
    assert project.env_kind == "docker"
    assert project.docker_env == DockerEnv(
        "python:3.11-slim", ("/data:/data",), (("MODE", "train"), "HOME")
    )


def test_folder_without_mlproject_uses_python_env_then_conda(tmp_path: Path) -> None:
    write_project(tmp_path, {"train.py": "print(1)\n", "conda.yaml": "dependencies: []\n"})
    project = load_project(tmp_path)
    assert project.spec_file is None and project.env_kind == "conda"
    assert project.entry_point("train.py").command == "python train.py"
    (tmp_path / "python_env.yaml").write_text("python: '3.11'\n")
    assert load_project(tmp_path).env_kind == "python"  # python_env.yaml first, as MLflow


def test_folder_without_anything_runs_locally(tmp_path: Path) -> None:
    write_project(tmp_path, {"run me.sh": "echo hi\n"})
    project = load_project(tmp_path)
    assert project.env_kind == "none"
    assert project.entry_point("run me.sh").command == "bash 'run me.sh'"


def test_script_entry_point_beside_declared_ones(tmp_path: Path) -> None:
    write_project(
        tmp_path, {"MLproject": "entry_points: {main: {command: 'echo'}}\n", "sub/t.py": ""}
    )
    assert load_project(tmp_path).entry_point("sub/t.py").command == "python sub/t.py"


ERRORS = [
    ("- a list\n", "MLproject: expected a mapping of fields, got a list"),
    ("name: [x]\n", "field 'name': expected a string, got a list"),
    ("entry_points: [main]\n", "field 'entry_points': expected a mapping, got a list"),
    (
        "entry_points: {main: 'echo'}\n",
        "entry point 'main': expected a mapping with 'command', got a string",
    ),
    (
        "entry_points: {main: {parameters: {}}}\n",
        "entry point 'main': field 'command': expected a string, got nothing",
    ),
    (
        "entry_points: {main: {command: 'x', parameters: [a]}}\n",
        "field 'parameters': expected a mapping, got a list",
    ),
    (
        "entry_points: {main: {command: 'x', parameters: {a: [1]}}}\n",
        "parameter 'a': expected a type or {type, default}, got a list",
    ),
    (
        "entry_points: {main: {command: 'x', parameters: {a: number}}}\n",
        "parameter 'a': field 'type': expected one of string, float, int, path, uri, got 'number'",
    ),
    (
        "entry_points: {main: {command: 'x', parameters: {a: {type: int, default: 1.5}}}}\n",
        "parameter 'a': field 'default': expected an int, got '1.5'",
    ),
    (
        "entry_points: {main: {command: 'x', parameters: {a: {type: float, default: abc}}}}\n",
        "parameter 'a': field 'default': expected a float, got 'abc'",
    ),
    (
        "entry_points: {main: {command: 'x', parameters: {a: {default: [1]}}}}\n",
        "field 'default': expected a single value, got a list",
    ),
    (
        "entry_points: {main: {command: 'x {b}'}}\n",
        "field 'command': {b} is not among the parameters (none declared)",
    ),
    (
        "entry_points: {main: {command: 'x {a!r}', parameters: {a: string}}}\n",
        "expected {a}, without a conversion or format",
    ),
    ("entry_points: {main: {command: 'x {a'}}\n", "field 'command': not a valid template"),
    (
        "python_env: e.yaml\nconda_env: c.yaml\n",
        "expected at most one environment, got python_env and conda_env",
    ),
    ("python_env: missing.yaml\n", "field 'python_env': expected a file of the project"),
    ("conda_env: 3\n", "field 'conda_env': expected a file name, got a number"),
    (
        "docker_env: {volumes: []}\n",
        "field 'docker_env': field 'image': expected an image name, got nothing",
    ),
    ("docker_env: python\n", "field 'docker_env': expected a mapping with 'image', got a string"),
    (
        "docker_env: {image: x, volumes: /a:/b}\n",
        "field 'volumes': expected a list of 'host:container' strings",
    ),
    (
        "docker_env: {image: x, environment: [[a, b, c]]}\n",
        "field 'environment': expected names to copy from the host or [name, value] pairs",
    ),
    (
        "docker_env: {image: x, environment: HOME}\n",
        "field 'environment': expected a list, got a string",
    ),
    ("entry_points: {main: {command: [x}\n", "MLproject: not valid YAML"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_malformed_spec_names_file_field_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    write_project(tmp_path, {"MLproject": text})
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    assert str(tmp_path / "MLproject") in str(caught.value)
    assert expected in str(caught.value)


def test_unknown_entry_point_lists_the_declared_ones(tmp_path: Path) -> None:
    write_project(
        tmp_path, {"MLproject": "entry_points: {main: {command: x}, eval: {command: y}}\n"}
    )
    with pytest.raises(
        ProjectError,
        match=r"unknown entry point 'train' in .*MLproject: expected one of the entry points"
        r" \(eval, main\) or a \.py or \.sh file",
    ):
        load_project(tmp_path).entry_point("train")


@pytest.mark.parametrize("name", ["missing.py", "../outside.py", "notes.txt"])
def test_script_entry_point_must_be_a_py_or_sh_file_inside(tmp_path: Path, name: str) -> None:
    write_project(tmp_path / "p", {"notes.txt": ""})
    write_project(tmp_path, {"outside.py": ""})
    with pytest.raises(ProjectError, match="has no MLproject"):
        load_project(tmp_path / "p").entry_point(name)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a folder"):
        load_project(tmp_path / "nothing")
