"""``trackline worker`` processes for tests of project runs through the server.

Every worker ``start_worker`` starts is remembered until ``stop_started_workers`` stops it
(the project tests' autouse fixture calls that after each test). A worker's stdout and stderr
go to a file, so that a chatty run never blocks it on a full pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_READY = "waiting for runs"


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    worker_id: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash: the worker renews no lease and reports nothing."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (SIGKILL after ``timeout`` s) and the exit status; safe to repeat."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


_started: list[WorkerProcess] = []


def start_worker(
    address: str,
    tmp: Path,
    name: str,
    *,
    labels: Sequence[str] = (),
    lease_seconds: int | None = None,
    once: bool = False,
) -> WorkerProcess:
    """Starts ``trackline worker`` against ``address`` as worker id ``name`` and returns once it
    waits for runs."""
    log = tmp / f"worker-{name}.log"
    args = [sys.executable, "-m", "trackline.cli", "--uri", address, "worker", "--worker-id", name]
    for label in labels:
        args += ["--label", label]
    if lease_seconds is not None:
        args += ["--lease-seconds", str(lease_seconds)]
    if once:
        args.append("--once")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    worker = WorkerProcess(proc, name, log)
    _started.append(worker)
    deadline = time.monotonic() + 30
    while _READY not in worker.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start: {worker.output()!r}")
        time.sleep(0.05)
    return worker


def stop_started_workers() -> None:
    """Stops every worker ``start_worker`` started that still runs."""
    while _started:
        _started.pop().stop()
