"""Running a child command in its own process group, its output streamed line by line, and
stopping the whole group: on cancel, on Ctrl-C, and after the child exits (what it left
running in the background), SIGTERM first, SIGKILL after a grace period."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

STOP_GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL
_POLL_SECONDS = 0.02  # how often a cancel is looked for while the child runs
_MAX_LINE = 1 << 16  # longer lines are passed on in pieces
_READER_JOIN_SECONDS = 2.0  # after the group is gone, for a pipe kept open by an escaped process

logger = logging.getLogger("trackline.projects")

# (stream, line): stream "stdout" or "stderr", the line without its newline
LineSink = Callable[[str, str], None]


class Cancelled(Exception):
    """The run was cancelled while a step of it ran."""


class ProcessRunner:
    """Runs commands one after the other for one project run, every line of their output to
    ``sink`` (called from reader threads, one call at a time, in order within a stream).
    Once ``cancel`` is set the running command's group is stopped and ``cancelled`` is true."""

    def __init__(self, sink: LineSink, cancel: threading.Event | None = None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._sink_failed = False
        self.cancel = cancel
        self.cancelled = False
        self.grace = STOP_GRACE_SECONDS

    def emit(self, stream: str, line: str) -> None:
        """Passes one line on. A sink that raises loses that line, not the stream: the pipe
        must be drained, or the child would block writing to it."""
        with self._lock:
            try:
                self._sink(stream, line)
            except Exception:
                if not self._sink_failed:
                    logger.exception("trackline: passing on the run's output failed")
                self._sink_failed = True

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> int:
        """Runs ``argv`` to its end (or the cancel) and returns its exit status (negative: the
        signal that ended it). A KeyboardInterrupt stops the group, then propagates."""
        if self.cancel is not None and self.cancel.is_set():
            self.cancelled = True
            return -signal.SIGTERM
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, out of reach of the terminal's ^C
        )
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=self._pump, args=(pipe, name), daemon=True)
            for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for reader in readers:
            reader.start()
        try:
            code = self._wait(proc)
        except BaseException:
            stop_group(proc, self.grace)
            raise
        finally:
            stop_group(proc, self.grace)  # what the child left running
            deadline = time.monotonic() + _READER_JOIN_SECONDS
            for reader in readers:
                reader.join(max(0.0, deadline - time.monotonic()))
        return code

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        if self.cancel is None:
            return proc.wait()
        while True:
            try:
                return proc.wait(_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                if self.cancel.is_set():
                    self.cancelled = True
                    stop_group(proc, self.grace)
                    return proc.wait()

    def _pump(self, pipe: IO[bytes], stream: str) -> None:
        with pipe:
            for raw in iter(lambda: pipe.readline(_MAX_LINE), b""):
                line = raw.decode("utf-8", errors="replace")
                self.emit(stream, line[:-1] if line.endswith("\n") else line)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stops every process of ``proc``'s group: SIGTERM, then SIGKILL to what is left after
    ``grace`` seconds. Returns once the leader is reaped and the group is empty (or, for
    processes that stay as zombies of another parent, once SIGKILL was sent)."""
    pgid = proc.pid  # start_new_session made the child its group's leader
    if not _signal_group(pgid, signal.SIGTERM):
        proc.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader as soon as it exits
        if proc.returncode is not None and not _signal_group(pgid, 0):
            return
        time.sleep(_POLL_SECONDS)
    _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Sends ``sig`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was reused by another user's processes
        return False
    return True
