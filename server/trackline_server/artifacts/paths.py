"""The rules of an artifact path (artifacts.proto): relative to the run's artifact root,
'/'-separated, 1 to 1,024 characters, no empty, '.' or '..' segment, no leading '/', no
backslash, NUL or other control character. A path that breaks one is INVALID_ARGUMENT
INVALID_ARTIFACT_PATH naming it, so nothing that could escape the run's root ever reaches a
storage backend (the local one also refuses symlinks that lead out: ``local.py``)."""

from __future__ import annotations

import unicodedata

from ..errors import InvalidArgument, shown

MAX_PATH_LENGTH = 1024


def invalid_path(path: str, why: str, field_name: str = "path") -> InvalidArgument:
    return InvalidArgument(
        "INVALID_ARTIFACT_PATH", f"artifact path {shown(path)} {why}", field_name
    )


def _control(char: str) -> bool:
    """C0 and C1 controls and DEL (Unicode category Cc); other code points are allowed."""
    return unicodedata.category(char) == "Cc"


def check_path(path: str, field_name: str = "path", *, allow_root: bool = False) -> str:
    """``path`` when it follows the rules; the run's root ("") only where ``allow_root``
    (a listing or a delete of everything). A trailing '/' of a directory is dropped."""
    if allow_root and path in ("", "/"):
        return ""
    if allow_root and path.endswith("/"):
        path = path[:-1]
    if not path:
        raise invalid_path(path, "is empty; name a file under the run's artifact root", field_name)
    if len(path) > MAX_PATH_LENGTH:
        raise invalid_path(path, f"is longer than {MAX_PATH_LENGTH} characters", field_name)
    if path.startswith("/"):
        raise invalid_path(path, "is absolute; give it relative to the run's root", field_name)
    if "\\" in path:
        raise invalid_path(path, "contains a backslash; separate directories with '/'", field_name)
    if any(_control(c) for c in path):
        raise invalid_path(path, "contains a NUL or control character", field_name)
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            what = "an empty" if not segment else f"a {segment!r}"
            raise invalid_path(path, f"has {what} segment", field_name)
    return path


def ancestors(path: str) -> list[str]:
    """The directories ``path`` lies in, outermost first: 'a/b/c' -> ['a', 'a/b']."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def join(directory: str, name: str) -> str:
    """``name`` under ``directory`` ("" is the run's root)."""
    return f"{directory}/{name}" if directory else name
