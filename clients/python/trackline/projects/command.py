"""An entry point's command line: the template filled with the checked, shell-quoted values.

Each declared parameter takes the value given, else its default (none: ProjectError, as for a
``float`` or ``int`` that does not read as one, a ``path`` that does not exist, or a ``uri``
without a scheme); a ``path`` becomes absolute, resolved from the caller's working folder.
Values given for undeclared parameters are appended as ``--key value``, as MLflow does. Every
value, and every undeclared key, is quoted with ``shlex.quote``: a value is one word of the
command whatever it holds.
"""

from __future__ import annotations

import os
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import ProjectError
from .spec import EntryPoint, Parameter, check_number


@dataclass(frozen=True)
class Command:
    text: str  # for ``bash -c``
    params: dict[
        str, str
    ]  # to log: the declared parameters' values (defaults included), then the rest


def build_command(
    entry_point: EntryPoint, values: Mapping[str, str], *, cwd: Path | None = None
) -> Command:
    """The command of ``entry_point`` with ``values`` (see the module's docstring); relative
    ``path`` values are resolved from ``cwd`` (default: the current folder)."""
    base = cwd or Path.cwd()
    missing = [
        p.name
        for p in entry_point.parameters.values()
        if p.default is None and p.name not in values
    ]
    if missing:
        raise ProjectError(
            f"entry point {entry_point.name!r}: no value for the required parameters"
            f" {', '.join(missing)}: expected -P {missing[0]}=VALUE"
        )
    logged: dict[str, str] = {}
    quoted: dict[str, str] = {}
    for param in entry_point.parameters.values():
        given = values.get(param.name, param.default)
        assert given is not None  # checked above
        logged[param.name] = given
        quoted[param.name] = shlex.quote(_checked(entry_point.name, param, given, base))
    extras = []
    for key, value in values.items():
        if key in entry_point.parameters:
            continue
        if not key or key.startswith("-"):
            raise ProjectError(
                f"parameter {key!r}: expected a name (not empty, not starting with '-')"
            )
        logged[key] = value
        extras.append(f"{shlex.quote('--' + key)} {shlex.quote(value)}")
    parts = [
        literal + (quoted[name] if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(entry_point.command)
    ]
    return Command(" ".join(["".join(parts), *extras]), logged)


def _checked(entry_point: str, param: Parameter, value: str, base: Path) -> str:
    """``value`` as the command gets it; ProjectError when it is not a ``param.type``."""
    where = f"entry point {entry_point!r}: parameter {param.name!r}"
    if param.type in ("float", "int"):
        check_number(where, param.type, value)
    elif param.type == "uri":
        parts = urlsplit(value)
        if len(parts.scheme) < 2 or not (parts.netloc or parts.path):  # "c:" is a drive
            raise ProjectError(f"{where}: expected a URI (scheme://...), got {value!r}")
    elif param.type == "path":
        return _local_path(where, value, base)
    return value


def _local_path(where: str, value: str, base: Path) -> str:
    parts = urlsplit(value)
    if parts.scheme == "file":
        value = unquote(parts.path)
    elif len(parts.scheme) >= 2:
        raise ProjectError(
            f"{where}: expected a local path, got {value!r}; declare the parameter as type uri"
            " for a remote location"
        )
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise ProjectError(f"{where}: expected an existing file or folder, {path} does not exist")
    return os.path.normpath(path)
