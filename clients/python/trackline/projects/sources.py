"""Where a project's files come from: a local folder, or a git repository (a local path or a
URL) cloned into a temporary folder, checked out at ``--version`` (a branch, a tag or a
commit) and recorded by its exact commit. ``#subdirectory`` after the URI names the project's
folder inside it (MLflow's rule). A local folder inside a git work tree runs in place and
records that work tree's commit, branch and whether it had uncommitted changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .._context import GIT_BRANCH, GIT_COMMIT, GIT_REPO_URL, _without_credentials, git_tags
from .errors import ProjectError

_GIT_TIMEOUT_S = 600.0
_REMOTE_SCHEMES = ("https", "http", "ssh", "git", "git+ssh", "git+https", "file")


@dataclass
class Source:
    """A fetched project: its folder, what the run records of where it came from, and the
    temporary clone to remove once the run is over (None for a folder used in place)."""

    directory: Path
    name: str  # the URI, a local path made absolute, without credentials
    tags: dict[str, str] = field(default_factory=dict)  # git commit, branch, repo URL, dirty
    clone: Path | None = None

    @property
    def commit(self) -> str | None:
        return self.tags.get(GIT_COMMIT)

    def remove(self) -> None:
        """Removes the temporary clone, if any."""
        if self.clone is not None:
            shutil.rmtree(self.clone, ignore_errors=True)
            self.clone = None


def split_uri(uri: str) -> tuple[str, str]:
    """``(location, subdirectory)`` of ``URI#subdirectory``; the subdirectory stays inside."""
    location, _, sub = uri.strip().partition("#")
    sub_path = PurePosixPath(sub)
    if sub_path.is_absolute() or ".." in sub_path.parts:
        raise ProjectError(
            f"project URI {uri!r}: expected a relative subdirectory after '#', without '..'"
        )
    return location, "" if str(sub_path) == "." else str(sub_path)


def fetch_project(uri: str, version: str | None = None) -> Source:
    """The project at ``uri`` (see the module's docstring); ProjectError when it cannot be
    fetched. A clone is the caller's to ``remove``."""
    location, sub = split_uri(uri)
    if not location:
        raise ProjectError(f"project URI {uri!r}: expected a folder or a git repository")
    local = _local_path(location)
    if local is not None and version is None:
        if not local.is_dir():
            problem = "is not a folder" if local.exists() else "does not exist (no such folder)"
            raise ProjectError(f"project URI {uri!r}: {local} {problem}")
        directory = _subdirectory(local, sub, uri)
        return Source(directory, _name(str(local), sub), git_tags(str(directory)))
    if local is not None and not _is_git_repository(local):
        raise ProjectError(f"--version {version!r} needs a git repository; {local} is not one")
    remote = str(local) if local is not None else location
    if local is None and not _looks_remote(location):
        raise ProjectError(
            f"project URI {uri!r}: no such folder, and not a git URL (https://, ssh://,"
            " git@host:repo)"
        )
    clone = Path(tempfile.mkdtemp(prefix="trackline-project-"))
    try:
        branch = _clone(remote, version, clone)
        directory = _subdirectory(clone, sub, uri)
        tags = {GIT_COMMIT: _git(clone, "rev-parse", "HEAD").strip()}
        if branch:
            tags[GIT_BRANCH] = branch
        if local is None:
            tags[GIT_REPO_URL] = _without_credentials(location)
        return Source(
            directory, _name(remote if local else _without_credentials(location), sub), tags, clone
        )
    except BaseException:
        shutil.rmtree(clone, ignore_errors=True)
        raise


def _local_path(location: str) -> Path | None:
    """The local path ``location`` names, None for a URL (``file://`` is a local path)."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path)).resolve()
    if _looks_remote(location):
        return None
    return Path(os.path.expanduser(location)).resolve()


def _looks_remote(location: str) -> bool:
    parts = urlsplit(location)
    if parts.scheme in _REMOTE_SCHEMES and parts.scheme != "file":
        return True
    head = location.split("/", 1)[0]  # scp-like user@host:path
    return "@" in head and ":" in location and not Path(location).exists()


def _name(location: str, sub: str) -> str:
    return f"{location}#{sub}" if sub else location


def _subdirectory(root: Path, sub: str, uri: str) -> Path:
    directory = (root / sub).resolve() if sub else root
    if not directory.is_dir() or not directory.is_relative_to(root.resolve()):
        raise ProjectError(f"project URI {uri!r}: no folder {sub!r} in {root}")
    return directory


def _is_git_repository(path: Path) -> bool:
    try:
        _git(path, "rev-parse", "--git-dir")
    except ProjectError:
        return False
    return True


def _clone(remote: str, version: str | None, dest: Path) -> str | None:
    """Clones ``remote`` into ``dest`` at ``version``; the branch checked out, if one."""
    if version is None:
        _git(dest, "clone", "--quiet", "--depth", "1", "--", _clone_url(remote), ".")
        branch = _git(dest, "rev-parse", "--abbrev-ref", "HEAD").strip()
        _git(dest, "submodule", "update", "--init", "--recursive", "--quiet")
        return None if branch == "HEAD" else branch
    try:  # a branch or a tag: only its commit is fetched
        _git(
            dest,
            "clone",
            "--quiet",
            "--depth",
            "1",
            "--branch",
            version,
            "--",
            _clone_url(remote),
            ".",
        )
    except ProjectError:  # a commit (or an unknown ref): the whole history, then a checkout
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        _git(dest, "clone", "--quiet", "--no-checkout", "--", _clone_url(remote), ".")
        try:
            _git(dest, "checkout", "--quiet", "--detach", f"{version}^{{commit}}")
        except ProjectError:
            raise ProjectError(
                f"--version {version!r}: no such branch, tag or commit in {remote}"
            ) from None
    _git(dest, "submodule", "update", "--init", "--recursive", "--quiet")
    is_branch = _git(dest, "rev-parse", "--abbrev-ref", "HEAD").strip() == version
    return version if is_branch else None


def _clone_url(remote: str) -> str:
    """A local repository as a file:// URL: git honours --depth only there."""
    return Path(remote).as_uri() if os.path.isabs(remote) else remote


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},  # no password prompt: fail instead
        )
    except FileNotFoundError:
        raise ProjectError(
            "git is not installed: it is needed for a git project URI or --version"
        ) from None
    except subprocess.TimeoutExpired:
        raise ProjectError(f"git {args[0]} did not finish within {_GIT_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise ProjectError(f"git {args[0]} failed: {message}")
    return done.stdout
