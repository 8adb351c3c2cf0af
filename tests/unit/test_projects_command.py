"""Entry point commands: values checked by type, defaults filled, undeclared values appended,
and every value one shell word whatever it holds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from trackline.projects import EntryPoint, Parameter, ProjectError
from trackline.projects.command import build_command

ECHO = EntryPoint(
    "main",
    "printf '%s\\0' {text} {n} {x}",
    {
        "text": Parameter("text"),
        "n": Parameter("n", "int", "7"),
        "x": Parameter("x", "float", "0.5"),
    },
)

HOSTILE = [
    "; rm -rf /",
    "$(touch pwned)",
    "`touch pwned`",
    "a'b\"c",
    "'",
    "line one\nline two",
    "tab\there",
    "ünïcödé ✓ 日本",
    "*",
    "--flag",
    "",
    "back\\slash",
    "$HOME",
]


def _words(command: str, cwd: Path) -> list[str]:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout.split("\0")[:-1]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_value_is_one_word(tmp_path: Path, value: str) -> None:
    command = build_command(ECHO, {"text": value})
    assert _words(command.text, tmp_path) == [value, "7", "0.5"]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_undeclared_key_and_value(tmp_path: Path, value: str) -> None:
    ep = EntryPoint("main", "printf '%s\\0'")
    command = build_command(ep, {"k;touch pwned": value})
    assert _words(command.text, tmp_path) == ["--k;touch pwned", value]
    assert not (tmp_path / "pwned").exists()


def test_defaults_and_logged_params() -> None:
    command = build_command(ECHO, {"text": "hi", "extra": "1", "other": "x y"})
    assert command.text == "printf '%s\\0' hi 7 0.5 --extra 1 --other 'x y'"
    assert command.params == {"text": "hi", "n": "7", "x": "0.5", "extra": "1", "other": "x y"}


def test_literal_braces_stay() -> None:
    ep = EntryPoint("main", "echo {{a}} {b}", {"b": Parameter("b")})
    assert build_command(ep, {"b": "x"}).text == "echo {a} x"


def test_missing_required_parameters() -> None:
    ep = EntryPoint(
        "main",
        "echo {a} {b} {c}",
        {k: Parameter(k, default=None if k != "b" else "1") for k in "abc"},
    )
    with pytest.raises(
        ProjectError,
        match=r"entry point 'main': no value for the required parameters a, c: expected -P a=VALUE",
    ):
        build_command(ep, {})


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("int", "1.5", "expected an int, got '1.5'"),
        ("int", "ten", "expected an int, got 'ten'"),
        ("int", "", "expected an int, got ''"),
        ("float", "0.1x", "expected a float, got '0.1x'"),
        ("float", "; rm", "expected a float, got '; rm'"),
        ("uri", "just-a-name", "expected a URI (scheme://...), got 'just-a-name'"),
        ("uri", "c:/windows", "expected a URI"),
        ("path", "does/not/exist", "expected an existing file or folder"),
        (
            "path",
            "s3://bucket/key",
            "expected a local path, got 's3://bucket/key'; declare the parameter as type uri",
        ),
    ],
)
def test_invalid_typed_values(tmp_path: Path, kind: str, value: str, message: str) -> None:
    ep = EntryPoint("train", "echo {v}", {"v": Parameter("v", kind)})
    with pytest.raises(ProjectError, match="entry point 'train': parameter 'v': ") as caught:
        build_command(ep, {"v": value}, cwd=tmp_path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int", "-3"),
        ("int", "10"),
        ("float", "1e-3"),
        ("float", "-2"),
        ("uri", "s3://b/k"),
        ("uri", "https://x.org/a"),
    ],
)
def test_valid_typed_values_pass_unchanged(kind: str, value: str) -> None:
    ep = EntryPoint("main", "echo {v}", {"v": Parameter("v", kind)})
    assert build_command(ep, {"v": value}).text == f"echo {value}"


def test_path_becomes_absolute(tmp_path: Path) -> None:
    (tmp_path / "data dir").mkdir()
    (tmp_path / "data dir" / "a.csv").write_text("x")
    ep = EntryPoint("main", "cat {p}", {"p": Parameter("p", "path")})
    command = build_command(ep, {"p": "data dir/a.csv"}, cwd=tmp_path)
    assert command.text == f"cat '{tmp_path}/data dir/a.csv'"
    assert command.params == {"p": "data dir/a.csv"}  # logged as given
    assert (
        build_command(ep, {"p": (tmp_path / "data dir").as_uri()}).text
        == f"cat '{tmp_path}/data dir'"
    )


@pytest.mark.parametrize("key", ["", "-x", "--x"])
def test_undeclared_key_must_be_a_name(key: str) -> None:
    with pytest.raises(ProjectError, match="expected a name"):
        build_command(EntryPoint("main", "echo"), {key: "1"})
