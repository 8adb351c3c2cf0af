"""``trackline worker``: leases project runs from the server's queue, one at a time, and runs
each exactly as ``trackline run`` does (``trackline.projects.execute``), as a tracked run.

While a run goes on, a renewal thread extends its lease every ``renew_interval`` seconds (a
third of the lease, at most 2 s, so a cancel reaches the run within seconds): the first
renewal after the tracked run exists moves the run to RUNNING; one that answers
``cancel_requested`` stops the run's processes (it ends KILLED); one that answers LEASE_LOST
(the lease expired and the run went back to the queue or failed) stops them too, and the
outcome is not reported. The run's output lines are batched to AppendProjectRunLogs by a
shipping thread (every ``LOG_FLUSH_SECONDS``, or sooner once ``LOG_BATCH_LINES`` wait), at
their offsets, so a retried batch is stored once. Then CompleteProjectRun reports the end
state, the exit code and the tracked run's id.

``stop()`` (SIGTERM or SIGINT in ``trackline worker``) ends the loop: the current run is
stopped (KILLED); a run leased after the stop was asked is handed back to the queue unstarted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import grpc

from trackline.v1 import projects_pb2 as ppb

from ._client import TracklineClient
from ._exceptions import TracklineError
from ._projects_client import ProjectRunLease

if TYPE_CHECKING:
    from .projects.execution import ProjectRunResult

LOG_FLUSH_SECONDS = 0.2
LOG_BATCH_LINES = 1000
MAX_LOG_LINE = 65536  # the server's limit; longer lines are cut
FINAL_FLUSH_SECONDS = 30.0  # how long the last lines are retried before the run is completed
ERROR_PAUSE_SECONDS = 1.0  # after a failed lease call, before the next
logger = logging.getLogger("trackline.worker")

Execute = Callable[..., "ProjectRunResult"]


def default_worker_id() -> str:
    """``host:pid``: unique among the workers running now, readable in a run's worker_id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _LogShipper:
    """Collects a run's output lines and appends them to the run's log in batches, from its
    own thread; ``close`` sends what is left."""

    def __init__(
        self, client: TracklineClient, lease: ProjectRunLease, on_lost: Callable[[], None]
    ) -> None:
        self._client = client
        self._lease = lease
        self._on_lost = on_lost
        self._offset = lease.project_run.log_line_count
        self._pending: list[str] = []
        self._lock = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="trackline-log-shipper")
        self._thread.daemon = True
        self._thread.start()

    def add(self, line: str) -> None:
        clean = line.replace("\x00", "\ufffd")[:MAX_LOG_LINE]
        with self._lock:
            self._pending.append(clean)
            if len(self._pending) >= LOG_BATCH_LINES:
                self._lock.notify()

    def close(self) -> None:
        """Sends every line collected (retrying for up to FINAL_FLUSH_SECONDS)."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join()

    def _loop(self) -> None:
        deadline: float | None = None
        while True:
            with self._lock:
                if not self._closing and len(self._pending) < LOG_BATCH_LINES:
                    self._lock.wait(LOG_FLUSH_SECONDS)
                batch = self._pending[:LOG_BATCH_LINES]
                closing = self._closing
            if closing and deadline is None:
                deadline = time.monotonic() + FINAL_FLUSH_SECONDS
            if batch and not self._send(batch):
                if deadline is not None and time.monotonic() > deadline:
                    logger.warning("trackline: %d log lines were not stored", len(self._pending))
                    return
                time.sleep(LOG_FLUSH_SECONDS)
                continue
            if closing and not self._pending:
                return

    def _send(self, batch: list[str]) -> bool:
        """Appends ``batch`` at the current offset; whether it was stored (or need not be)."""
        run, lease_id = self._lease.project_run, self._lease.lease_id
        try:
            stored = self._client.append_project_run_logs(
                run.project_run_id, lease_id, self._offset, batch
            )
        except TracklineError as err:
            if err.reason == "LEASE_LOST":
                self._on_lost()
                with self._lock:
                    self._pending.clear()
                return True
            logger.warning("trackline: appending log lines failed (retrying): %s", err)
            return False
        with self._lock:
            del self._pending[: max(0, stored - self._offset)]
        self._offset = stored
        return True


class _Renewer:
    """Renews a lease from its own thread until ``close``; sets ``cancel`` when the server asks
    for a cancel or the lease is lost (``lost``)."""

    def __init__(
        self,
        client: TracklineClient,
        lease: ProjectRunLease,
        interval: float,
        cancel: threading.Event,
    ) -> None:
        self._client = client
        self._lease = lease
        self._interval = interval
        self.cancel = cancel
        self.lost = threading.Event()
        self.cancel_requested = False
        self.tracking_run_id = ""
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trackline-lease-renewer")
        self._thread.daemon = True
        self._thread.start()

    def started(self, tracking_run_id: str) -> None:
        """The tracked run exists: the next renewal, at once, reports it (RUNNING)."""
        self.tracking_run_id = tracking_run_id
        self._wake.set()

    def mark_lost(self) -> None:
        self.lost.set()
        self.cancel.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join()

    def _loop(self) -> None:
        run_id = self._lease.project_run.project_run_id
        while not self._closed.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                answer = self._client.renew_project_run_lease(
                    run_id, self._lease.lease_id, tracking_run_id=self.tracking_run_id
                )
            except TracklineError as err:
                if err.reason == "LEASE_LOST":
                    logger.warning("trackline: lost the lease of project run %s", run_id)
                    self.mark_lost()
                    return
                logger.warning("trackline: renewing the lease failed (retrying): %s", err)
                continue
            if answer.cancel_requested and not self.cancel.is_set():
                logger.warning("trackline: project run %s was cancelled", run_id)
                self.cancel_requested = True
                self.cancel.set()


class Worker:
    """Leases and runs project runs until ``stop`` (or, with ``once``, after one run).

    ``execute`` is ``trackline.projects.execute`` (given by the caller, so that this module
    does not import the projects package and its YAML dependency). Each lease call waits up
    to ``wait_seconds`` for a run (the server hands a new one over at once, however long the
    wait): a short wait lets an idle worker that is asked to stop do so within it, since a
    lease call under way is not cancelled (the server could lease a run to a caller gone)."""

    def __init__(
        self,
        client: TracklineClient,
        execute: Execute,
        *,
        worker_id: str | None = None,
        labels: Iterable[str] = (),
        lease_seconds: int = 30,
        wait_seconds: float = 2.0,
        once: bool = False,
    ) -> None:
        self.client = client
        self.execute = execute
        self.worker_id = worker_id or default_worker_id()
        self.labels = sorted(set(labels))
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.renew_interval = min(lease_seconds / 3, 2.0)
        self.once = once
        self._stopping = threading.Event()
        self._cancel: threading.Event | None = None

    def stop(self) -> None:
        """Asks the loop to end: the current run is stopped (KILLED), none is started after."""
        self._stopping.set()
        if self._cancel is not None:
            self._cancel.set()

    def run(self) -> int:
        """Leases and runs runs until stopped (``once``: until one ran); the number run."""
        done = 0
        while not self._stopping.is_set():
            try:
                lease = self.client.lease_project_run(
                    self.worker_id,
                    labels=self.labels,
                    lease_seconds=self.lease_seconds,
                    wait_seconds=self.wait_seconds,
                )
            except TracklineError as err:
                if err.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):
                    raise
                logger.warning("trackline: leasing a run failed (retrying): %s", err)
                self._stopping.wait(ERROR_PAUSE_SECONDS)
                continue
            if lease is None:
                continue
            if self._stopping.is_set():
                self._hand_back(lease)
                break
            self.run_one(lease)
            done += 1
            if self.once:
                break
        return done

    def run_one(self, lease: ProjectRunLease) -> ppb.ProjectRun | None:
        """Runs the leased run to its end and reports it; the run as completed (None when the
        lease was lost on the way)."""
        run = lease.project_run
        cancel = threading.Event()
        self._cancel = cancel
        if self._stopping.is_set():
            cancel.set()
        renewer = _Renewer(self.client, lease, self.renew_interval, cancel)
        shipper = _LogShipper(self.client, lease, renewer.mark_lost)
        logger.warning(
            "trackline: running project run %s (attempt %d): %s -e %s",
            run.project_run_id, run.attempt, run.uri, run.entry_point,
        )  # fmt: skip
        state, exit_code, message = "FAILED", None, ""
        try:
            result = self.execute(
                self.client,
                run.uri,
                entry_point=run.entry_point or "main",
                params={p.key: p.value for p in run.params},
                version=run.version or None,
                experiment_id=run.experiment_id or None,
                experiment_name=run.experiment_name or None,
                run_name=run.run_name or None,
                env_manager=run.env_manager or None,
                backend="worker",
                on_started=renewer.started,
                on_output=shipper.add,
                cancel=cancel,
                extra_tags={
                    "trackline.project_run_id": run.project_run_id,
                    "trackline.worker_id": self.worker_id,
                },
            )
            state, exit_code = result.status, result.exit_code
            message = _outcome(state, exit_code, renewer.cancel_requested)
        except Exception as err:  # the run fails, the worker goes on to the next
            if not isinstance(
                err, ValueError | TracklineError | OSError
            ):  # ProjectError: ValueError
                logger.exception("trackline: project run %s failed", run.project_run_id)
            message = " ".join(str(err).split()) or type(err).__name__
            shipper.add(f"trackline: {message}")
        finally:
            shipper.close()
            renewer.close()
            self._cancel = None
        if renewer.lost.is_set():
            logger.warning("trackline: project run %s: the lease was lost", run.project_run_id)
            return None
        try:
            return self.client.complete_project_run(
                run.project_run_id,
                lease.lease_id,
                state,
                exit_code=exit_code,
                tracking_run_id=renewer.tracking_run_id,
                status_message=message,
            )
        except TracklineError as err:
            logger.warning(
                "trackline: reporting project run %s failed: %s", run.project_run_id, err
            )
            return None

    def _hand_back(self, lease: ProjectRunLease) -> None:
        try:
            self.client.complete_project_run(
                lease.project_run.project_run_id, lease.lease_id, "QUEUED"
            )
        except TracklineError as err:  # the lease expires and the run is queued again then
            logger.warning("trackline: handing back a run failed: %s", err)


def _outcome(state: str, exit_code: int | None, cancelled: bool) -> str:
    """The status message of a run that ran to ``state``."""
    if state == "KILLED":
        return "cancelled" if cancelled else "the worker was stopped while the run ran"
    if state == "FAILED":
        return f"the command exited with status {exit_code}"
    return ""
