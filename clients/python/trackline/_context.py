"""Where a run started from this process came from: who started it, the source (a script, a
module run with ``-m``, a notebook) and, inside a git repository, the commit, the branch and
whether the work tree had uncommitted changes. ``start_run`` records them as system tags, in
Trackline's namespace (MLflow's ``mlflow.source.*`` tags; the server's filters accept MLflow's
names for them), and every new run records its user (``user_id``, MLflow's attribute)."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

SOURCE_NAME = "trackline.source.name"  # the script's path, the module's name, the notebook
SOURCE_TYPE = "trackline.source.type"  # LOCAL or NOTEBOOK, as MLflow's
ENTRY_POINT = "trackline.source.entry_point"  # the module run with -m, or the script's name
GIT_COMMIT = "trackline.source.git.commit"
GIT_BRANCH = "trackline.source.git.branch"  # absent on a detached HEAD
GIT_DIRTY = "trackline.source.git.dirty"  # "true" when tracked files had changes
GIT_REPO_URL = "trackline.source.git.repo_url"  # the origin remote, without credentials

_GIT_TIMEOUT_S = 5.0


def current_user() -> str:
    """``TRACKLINE_USER``, else the user this process runs as; "" when neither is known (a
    container's user without a passwd entry)."""
    if user := os.environ.get("TRACKLINE_USER"):
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def system_tags() -> dict[str, str]:
    """The source and git tags of a run started now (see the module's docstring)."""
    name, kind, entry_point, directory = _source()
    found = {SOURCE_NAME: name, SOURCE_TYPE: kind}
    if entry_point:
        found[ENTRY_POINT] = entry_point
    found.update(git_tags(directory))
    return found


def git_tags(directory: str) -> dict[str, str]:
    """The commit, branch, dirty flag and origin of the git work tree holding ``directory``;
    none when it is not in one, or git is not installed or does not answer in time."""
    status = _git(directory, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return {}
    tags: dict[str, str] = {}
    dirty = False
    for line in status.splitlines():
        if line.startswith("# branch.oid ") and line != "# branch.oid (initial)":
            tags[GIT_COMMIT] = line.removeprefix("# branch.oid ")
        elif line.startswith("# branch.head ") and line != "# branch.head (detached)":
            tags[GIT_BRANCH] = line.removeprefix("# branch.head ")
        elif line and not line.startswith("#"):
            dirty = True
    if GIT_COMMIT not in tags:  # a repository without commits: nothing to point back to
        return {}
    tags[GIT_DIRTY] = "true" if dirty else "false"
    origin = _git(directory, "config", "--get", "remote.origin.url")
    if origin and origin.strip():
        tags[GIT_REPO_URL] = _without_credentials(origin.strip())
    return tags


def _source() -> tuple[str, str, str, str]:
    """(name, type, entry point, directory) of what runs in this process."""
    main = sys.modules.get("__main__")
    if "ipykernel" in sys.modules:  # a Jupyter kernel
        # Jupyter names the notebook in JPY_SESSION_NAME (since jupyter_server 2.0).
        notebook = os.environ.get("JPY_SESSION_NAME", "")
        directory = os.path.dirname(notebook) if notebook else os.getcwd()
        return notebook or "notebook", "NOTEBOOK", "", directory
    path = getattr(main, "__file__", None)
    if not path:  # the interactive interpreter, or python -c
        return sys.argv[0] or "<interactive>", "LOCAL", "", os.getcwd()
    path = os.path.abspath(path)
    spec = getattr(main, "__spec__", None)
    entry_point = spec.name if spec is not None else os.path.basename(path)
    return path, "LOCAL", entry_point, os.path.dirname(path)


def _git(directory: str, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", directory, *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # a status must not take the lock
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _without_credentials(url: str) -> str:
    """``url`` without a user or token in it (``https://user:token@host/...``)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url  # scp-like "git@host:org/repo" names a login, not a secret
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
