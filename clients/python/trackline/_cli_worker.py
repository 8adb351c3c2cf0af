"""``trackline worker [--label L ...] [--lease-seconds N] [--once]``: leases project runs
from the server's queue and runs them here, one at a time (``_worker.Worker``), until SIGTERM
or Ctrl-C. The first signal stops the current run (it ends KILLED) and exits with status 0;
a lease the server refuses (a bad label, a bad token) is one line on stderr and status 2.
``trackline.projects`` (and PyYAML) is imported only when this command runs.

And ``trackline run --backend worker [--detach]`` (``run_on_worker``): the submitting side."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from trackline.v1 import projects_pb2 as ppb

from ._exceptions import TracklineError, Unavailable
from ._projects_client import ProjectRunLogStream, state_name

if TYPE_CHECKING:
    from ._client import TracklineClient

EXIT_ERROR = 2
FOLLOW_RETRY_SECONDS = 60.0  # how long a broken log stream is opened again


def add_parsers(sub: Any) -> None:
    """Adds ``worker`` to the ``trackline`` command's subparsers."""
    worker = sub.add_parser("worker", help="run project runs submitted to the server's queue")
    worker.add_argument(
        "--label",
        action="append",
        default=[],
        help="a label this worker has (repeatable): it takes runs requiring only labels it has",
    )
    worker.add_argument(
        "--lease-seconds",
        type=_lease_seconds,
        default=30,
        help="how long a lease lasts unless renewed (renewed every third of it, at most every"
        " 2 s): a worker that dies loses its run after about this long (default 30)",
    )
    worker.add_argument(
        "--worker-id", default=None, help="the name runs record (default: host:pid)"
    )
    worker.add_argument("--once", action="store_true", help="exit after one run")


def main(args: argparse.Namespace) -> int:
    """Runs ``trackline worker`` and returns its exit status."""
    from ._client import TracklineClient
    from ._worker import Worker

    logging.basicConfig(format="%(message)s", stream=sys.stderr)
    logging.getLogger("trackline").setLevel(logging.WARNING)
    from .projects import execute

    client = TracklineClient(
        args.uri,
        token=args.token,
        retry_seconds=30.0,
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
    )
    worker = Worker(
        client,
        execute,
        worker_id=args.worker_id,
        labels=args.label,
        lease_seconds=args.lease_seconds,
        once=args.once,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _note(f"worker {worker.worker_id} waiting for runs at {client.uri}")
    try:
        done = worker.run()
    except TracklineError as err:
        _note(" ".join(str(err).split()))
        return EXIT_ERROR
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.close()
    _note(f"worker {worker.worker_id} stopped after {done} run{'s' * (done != 1)}")
    return 0


def _follow(
    client: TracklineClient,
    run_id: str,
    streams: list[ProjectRunLogStream],
    stopped: list[int],
) -> None:
    """Prints the run's lines until it ends (or ``stopped`` fills). A stream that breaks (the
    server restarted, another replica took over) is opened again from the next line, as long
    as the server comes back within FOLLOW_RETRY_SECONDS."""
    offset, broke_at = 0, None
    while not stopped:
        stream = client.stream_project_run_logs(run_id, offset)
        streams[:] = [stream]
        try:
            for line in stream:
                print(line, flush=True)
                broke_at = None
            return
        except Unavailable:
            now = time.monotonic()
            broke_at = broke_at or now
            if now - broke_at > FOLLOW_RETRY_SECONDS:
                raise
            offset = stream.next_offset
            time.sleep(1.0)


def _lease_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 1 to 3600 seconds, not {text!r:.80}")
    return value


def _note(text: str) -> None:
    sys.stderr.write(f"trackline: {text}\n")
    sys.stderr.flush()


def run_on_worker(args: argparse.Namespace, client: TracklineClient, params: dict[str, str]) -> int:
    """``trackline run --backend worker``: submits the run to the server's queue and prints
    its id; then, unless ``--detach``, prints its log lines as a worker appends them and
    returns the run's outcome as ``trackline run`` does (0, the command's status, 1; 130 when
    it was killed). Ctrl-C or SIGTERM while following cancels the run."""
    run = client.submit_project_run(
        args.project_uri,
        entry_point=args.entry_point,
        params=params,
        version=args.version or "",
        experiment_id=args.experiment_id or "",
        experiment_name=args.experiment_name or "",
        run_name=args.run_name or "",
        env_manager=args.env_manager or "",
        required_labels=args.label,
        max_retries=args.max_retries,
    )
    run_id = run.project_run_id
    if args.detach:
        print(run_id, flush=True)
        return 0
    _note(f"project run {run_id} queued")
    stopped: list[int] = []
    streams: list[ProjectRunLogStream] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        for stream in streams:
            stream.close()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _follow(client, run_id, streams, stopped)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        with contextlib.suppress(TracklineError):  # it may have ended meanwhile
            client.cancel_project_run(run_id)
        _note(f"project run {run_id} cancelled")
        return 130 if stopped[0] == signal.SIGINT else 143
    ended = client.get_project_run(run_id)
    _note(f"project run {run_id} {state_name(ended.state)} (tracked run {ended.tracking_run_id})")
    if ended.state == ppb.PROJECT_RUN_STATE_FINISHED:
        return 0
    if ended.state == ppb.PROJECT_RUN_STATE_KILLED:
        return 130
    code = ended.exit_code if ended.HasField("exit_code") else 1
    return code if 0 < code < 126 else 1
