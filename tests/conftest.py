"""Shared fixtures: a real server process on an ephemeral loopback port over a temp SQLite file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from trackline import TracklineClient


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    address: str
    db_path: Path
    artifacts: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def start_server(tmp: Path) -> ServerProcess:
    db = tmp / "trackline.db"
    art = tmp / "artifacts"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackline_server",
            "--port",
            "0",
            "--store-uri",
            f"sqlite+aiosqlite:///{db}",
            "--artifact-root",
            str(art),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on ([\d.]+:\d+)", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return ServerProcess(proc, match.group(1), db, art)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.proc.terminate()
        srv.proc.wait(15)
    if srv.proc.stdout:
        srv.proc.stdout.close()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[TracklineClient]:
    c = TracklineClient(server.address, retry_seconds=5)
    yield c
    c.close()
