"""The artifact path rules (artifacts.proto): what is refused, with INVALID_ARTIFACT_PATH
naming the path, and what passes unchanged."""

from __future__ import annotations

import pytest
from trackline_server.artifacts.paths import MAX_PATH_LENGTH, ancestors, check_path
from trackline_server.errors import InvalidArgument

REFUSED = [
    "",
    "..",
    "../x",
    "a/../../x",
    "a/..",
    ".",
    "./a",
    "a/./b",
    "/etc/passwd",
    "/",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "a\tb",
    "a\x7fb",
    "a\x85b",  # a C1 control
    "a\\b",
    "..\\x",
    "C:\\x",
    "x" * (MAX_PATH_LENGTH + 1),
]
ACCEPTED = [
    "model.pkl",
    "a/b/c.txt",
    "données/modèle.pkl",
    "模型/权重.bin",
    "emoji-🙂.png",
    "..a/b..",
    ".hidden/.x",
    "a b/c d",
    "x" * MAX_PATH_LENGTH,
]


@pytest.mark.parametrize("path", REFUSED)
def test_a_bad_path_is_invalid_artifact_path_naming_it(path: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_path(path)
    assert info.value.reason == "INVALID_ARTIFACT_PATH"
    assert info.value.field == "path"
    assert repr(path)[:20] in info.value.message


@pytest.mark.parametrize("path", ACCEPTED)
def test_a_good_path_passes_unchanged(path: str) -> None:
    assert check_path(path) == path


def test_1025_characters_are_refused_and_1024_accepted() -> None:
    assert len(check_path("a/" + "b" * (MAX_PATH_LENGTH - 2))) == MAX_PATH_LENGTH
    with pytest.raises(InvalidArgument, match="longer than 1024"):
        check_path("a/" + "b" * (MAX_PATH_LENGTH - 1))


def test_the_root_is_allowed_only_where_asked_for() -> None:
    assert check_path("", allow_root=True) == ""
    assert check_path("/", allow_root=True) == ""
    assert check_path("a/b/", allow_root=True) == "a/b"
    with pytest.raises(InvalidArgument):
        check_path("../", allow_root=True)


def test_the_field_named_is_the_callers() -> None:
    with pytest.raises(InvalidArgument) as info:
        check_path("..", "header.path")
    assert info.value.field == "header.path"


def test_ancestors_are_outermost_first() -> None:
    assert ancestors("a/b/c") == ["a", "a/b"]
    assert ancestors("c") == []
