"""Project folders and git repositories made by tests of ``trackline run``, and the checks
they share (is a process gone, the tracked fixture project)."""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import subprocess
import textwrap
import zipfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
TRACKED = FIXTURES / "tracked"  # logs params and metrics through trackline; fail; sleep


def write_project(directory: Path, files: dict[str, str]) -> Path:
    """``directory`` with ``files`` (name -> text, dedented) written into it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def python_env_yaml(dependencies: list[str] | None = None) -> str:
    """A python_env.yaml for this interpreter's version (uv cannot download one here)."""
    deps = "".join(f"\n  - {d!r}" for d in dependencies or []) or " []"
    return f'python: "{platform.python_version()}"\ndependencies:{deps}\n'


def git(directory: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=directory, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def commit_all(directory: Path, message: str) -> str:
    """Commits everything in the repository ``directory``; the new commit's id."""
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", message)
    return git(directory, "rev-parse", "HEAD")


def pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def make_wheel(directory: Path, name: str, version: str, source: str) -> Path:
    """A pure-Python wheel of the module ``name`` (``source`` its text), built by hand so that
    installing it needs no index and no build backend."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [f"{path},sha256={_urlsafe_digest(data)},{len(data)}" for path, data in files.items()]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
