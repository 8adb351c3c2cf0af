"""Files and servers for the client's artifact tests: a tree of awkward files, its contents
read back, a big file, and a server restarted on the same port and store (to break a
transfer and let the client resume it)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .ports import free_port
from .servers import ServerProcess, start_server

# Relative path -> bytes: small, empty, unicode-named, nested, a name with spaces.
TREE: dict[str, bytes] = {
    "a.txt": b"alpha\n",
    "empty.bin": b"",
    "naïve café ✓.txt": "unicode ✓\n".encode(),
    "deep/er/still/z.json": b'{"z": 1}',
    "deep/b c.csv": b"x,y\n1,2\n",
    "bin/blob.dat": bytes(range(256)) * 300,
}


def write_tree(root: Path, files: dict[str, bytes] = TREE) -> Path:
    """Writes ``files`` under ``root`` (created) and returns ``root``."""
    for rel, data in files.items():
        path = root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as {'/'-separated relative path: bytes}."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def big_file(path: Path, size: int) -> bytes:
    """Writes ``size`` bytes of noise (that no layer can compress away) to ``path``; returns
    them."""
    data = os.urandom(size)
    path.write_bytes(data)
    return data


class Restartable:
    """A server on a fixed port whose process can be killed and started again over the same
    store and artifact folder: a client's connection breaks, then the server is back."""

    def __init__(self, tmp: Path, extra_args: list[str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.extra_args = ["--port", str(self.port), *(extra_args or [])]
        self.server = start_server(tmp, extra_args=self.extra_args)
        self.restarts = 0

    @property
    def address(self) -> str:
        return self.server.address

    def kill_and_restart(self) -> ServerProcess:
        self.server.kill()
        self.server = start_server(self.tmp, self.server.store_uri, self.extra_args)
        self.restarts += 1
        return self.server
