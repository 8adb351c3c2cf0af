"""The local side of artifact transfers: a file's size and SHA-256, the files of a directory
to upload, where a downloaded file goes, and a few transfers at a time."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

READ_BYTES = 4 * 1024 * 1024
PARALLEL_FILES = 4

T = TypeVar("T")


def file_digest(local: str) -> tuple[int, str]:
    """The file's size and SHA-256 (hex), read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(local, "rb") as src:
        while chunk := src.read(READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def local_files(local_dir: str) -> list[tuple[str, str]]:
    """Every file under ``local_dir`` as (local path, '/'-separated path relative to it),
    in name order. Symlinks are followed when they point inside ``local_dir``; one that
    points outside it, or a directory symlink that loops, is a ValueError naming it."""
    root = os.path.realpath(local_dir)
    if not os.path.isdir(root):
        raise ValueError(f"{local_dir!r} is not a directory")
    found: list[tuple[str, str]] = []

    def visit(directory: str, prefix: str, ancestors: frozenset[str]) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if os.path.commonpath([root, real]) != root:
                    raise ValueError(
                        f"{entry.path!r} is a symlink to {real!r}, outside {local_dir!r}"
                    )
            if entry.is_dir():
                real = os.path.realpath(entry.path)
                if real in ancestors:
                    raise ValueError(f"{entry.path!r} is a symlink loop")
                visit(entry.path, f"{prefix}{entry.name}/", ancestors | {real})
            else:
                found.append((entry.path, prefix + entry.name))

    visit(root, "", frozenset({root}))
    return found


def local_target(root: Path, relative: str) -> Path:
    """Where a file at ``relative`` (a path the server listed) goes under ``root``; a
    ValueError when it would land outside ``root`` (only a broken or hostile server sends
    such a path)."""
    parts = relative.split("/")
    if not relative or any(p in ("", ".", "..") or os.sep in p for p in parts):
        raise ValueError(f"the server listed an artifact path {relative!r} not safe to write")
    return root.joinpath(*parts)


def in_parallel(work: Callable[[T], None], items: Sequence[T]) -> None:
    """Runs ``work`` on every item, ``PARALLEL_FILES`` at a time; the first failure cancels
    the items not started and is raised once the running ones are done."""
    if len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(min(PARALLEL_FILES, len(items)), "trackline-artifacts") as pool:
        futures = [pool.submit(work, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            error = future.exception()
            if error is not None:
                raise error


__all__ = ["file_digest", "in_parallel", "local_files", "local_target"]
