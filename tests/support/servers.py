"""Real server processes on loopback, for tests and benchmarks.

Every server ``start_server`` starts is remembered until ``stop_started_servers`` stops it:
the test session's autouse fixture calls that after each test, so a test stops a server
itself only when stopping (or killing) it is what the test is about.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .databases import sqlite_url


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    address: str
    store_uri: str
    artifacts: Path
    banner: str  # the line it printed once listening

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing gets to run on the way out."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Terminates the server if it still runs (SIGTERM: a graceful shutdown; SIGKILL
        after 15 s) and closes its pipe. Safe to call more than once."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()


_started: list[ServerProcess] = []


def start_server(
    tmp: Path,
    store_uri: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Starts ``python -m trackline_server`` on a free port (unless ``extra_args`` names
    one) over ``store_uri`` (default: a SQLite file in ``tmp``) and returns once it listens.
    ``env`` adds to the environment it inherits (e.g. an S3 endpoint and credentials); an
    ``--artifact-root`` in ``extra_args`` overrides the default folder in ``tmp``."""
    store_uri = store_uri or sqlite_url(tmp)
    art = tmp / "artifacts"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trackline_server",
            "--port",
            "0",
            "--store-uri",
            store_uri,
            "--artifact-root",
            str(art),
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on ([\d.]+:\d+)", line)
    if match is None:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        raise RuntimeError(f"server did not start: {line!r}")
    srv = ServerProcess(proc, match.group(1), store_uri, art, line.strip())
    _started.append(srv)
    return srv


def stop_started_servers() -> None:
    """Stops every server ``start_server`` started and that is still running."""
    while _started:
        _started.pop().stop()
