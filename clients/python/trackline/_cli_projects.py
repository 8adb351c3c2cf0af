"""``trackline run URI``: runs a project (an MLproject folder or git repository) as a tracked
run, here, in its declared environment (see ``trackline.projects``).

Its output streams to the terminal and is stored with the run. The exit status is the
command's (1 when it failed without one, e.g. its environment did not build), 130 after Ctrl-C
and 143 after SIGTERM (the run then ends KILLED and the command's process group is stopped).
A project that cannot run as asked, or a server that refuses, is one line on stderr and exit
status 2. ``trackline.projects`` (and PyYAML) is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ._cli_worker import run_on_worker
from ._exceptions import TracklineError

ENV_MANAGERS = ("local", "uv", "virtualenv", "conda")  # as trackline.projects: not imported here
EXIT_ERROR = 2
_SIGNAL_EXIT: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


def add_parsers(sub: Any) -> None:
    """Adds ``run`` to the ``trackline`` command's subparsers."""
    run = sub.add_parser("run", help="run a project (MLproject folder or git repository)")
    run.add_argument("project_uri", metavar="URI", help="a folder or git URL; #subdir inside")
    run.add_argument("-e", "--entry-point", default="main", help="entry point or .py/.sh file")
    run.add_argument(
        "-P", "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter"
    )
    exp = run.add_mutually_exclusive_group()
    exp.add_argument("--experiment-name", default=None, help="created when missing")
    exp.add_argument("--experiment-id", default=None)
    run.add_argument("--run-name", default=None)
    run.add_argument(
        "--env-manager",
        choices=ENV_MANAGERS,
        default=None,
        help="default: uv (else virtualenv) for a project with an environment, else local",
    )
    run.add_argument("--version", default=None, help="git branch, tag or commit")
    run.add_argument(
        "--backend",
        choices=("local", "worker"),
        default="local",
        help="local: run here; worker: submit to the server's queue for a trackline worker",
    )
    run.add_argument("--detach", action="store_true", help="worker: print the id and return")
    run.add_argument("--label", action="append", default=[], help="worker: a label it needs")
    run.add_argument(
        "--max-retries",
        type=int,
        default=0,
        help="worker: queue the run again up to this many times (0-100) if its worker dies",
    )


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs as a mapping; ValueError for a pair without '=' or a key twice."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"-P {pair!r}: expected KEY=VALUE")
        if key in params:
            raise ValueError(f"-P {key}: given twice")
        params[key] = value
    return params


def main(args: argparse.Namespace) -> int:
    """Runs ``trackline run`` and returns its exit status."""
    from ._client import TracklineClient

    logging.getLogger("trackline.projects").setLevel(logging.WARNING)
    try:
        params = parse_params(args.param)
        client = TracklineClient(
            args.uri,
            token=args.token,
            retry_seconds=10.0,
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
        )
    except ValueError as err:
        return _error(err)
    if args.backend == "worker":
        try:
            return run_on_worker(args, client, params)
        except (TracklineError, ValueError) as err:
            return _error(err)
        finally:
            client.close()
    cancel = threading.Event()
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        cancel.set()

    try:
        from .projects import ProjectError, execute
    except ImportError as err:  # PyYAML, an optional dependency
        client.close()
        return _error(ValueError(f"{err}: trackline run needs pip install 'trackline[projects]'"))
    previous = {sig: signal.signal(sig, stop) for sig in _SIGNAL_EXIT}
    try:
        result = execute(
            client,
            args.project_uri,
            entry_point=args.entry_point,
            params=params,
            version=args.version,
            experiment_id=args.experiment_id,
            experiment_name=args.experiment_name,
            run_name=args.run_name,
            env_manager=args.env_manager,
            on_started=lambda run_id: _note(f"run {run_id} started"),
            cancel=cancel,
        )
    except (ProjectError, TracklineError, ValueError, OSError) as err:
        return _error(err)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.close()
    _note(f"run {result.run_id} {result.status}")
    if result.status == "KILLED":
        return _SIGNAL_EXIT[received[0]] if received else 130
    if result.status == "FINISHED":
        return 0
    return result.exit_code if 0 < result.exit_code < 126 else 1


def _note(text: str) -> None:
    sys.stderr.write(f"trackline: {text}\n")
    sys.stderr.flush()


def _error(err: Exception) -> int:
    _note(" ".join(str(err).split()))
    return EXIT_ERROR
