"""``execute``: one project run, as ``trackline run`` and ``trackline worker`` do it.

Everything that can be checked is checked before the tracking run is created (the source,
the MLproject file, the entry point and its parameters, the environment manager, the
experiment); a ``ProjectError`` then means nothing was created. Then the run is created with
the project's tags and params, the environment is built (or taken from the cache), and the
command runs in its own process group with ``TRACKLINE_URI``, ``TRACKLINE_RUN_ID``,
``TRACKLINE_EXPERIMENT_ID``, ``TRACKLINE_EXPERIMENT`` (the experiment's name, as ``start_run``
reads it), ``TRACKLINE_TOKEN`` and the client's TLS files (``TRACKLINE_CA_FILE``, ...), so
that the project's own ``trackline.start_run()`` logs into this run. Its stdout and stderr
lines (and the environment build's) go to ``on_output`` as they come and to the run's log
artifact, ``logs/output.txt``. The run ends FINISHED when
the command exits 0, FAILED otherwise (a failed environment build included), KILLED when
``cancel`` is set or a KeyboardInterrupt arrives (the process group is stopped: SIGTERM, SIGKILL
after ``process.STOP_GRACE_SECONDS``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from trackline.v1 import resources_pb2 as pb

from .._client import TracklineClient
from .._context import SOURCE_NAME, SOURCE_TYPE
from .._exceptions import AlreadyExists, NotFound, TracklineError
from .._tls import CA_FILE_VARIABLE, CLIENT_CERT_VARIABLE, CLIENT_KEY_VARIABLE
from .command import Command, build_command
from .docker import remove_container
from .environments import (
    ENV_MANAGERS,
    BuildFailed,
    EnvironmentPlan,
    build_environment,
    plan_environment,
)
from .errors import ProjectError
from .process import Cancelled, ProcessRunner
from .sources import Source, fetch_project
from .spec import load_project

SOURCE_TYPE_PROJECT = "PROJECT"  # MLflow's SourceType.PROJECT
PROJECT_ENTRY_POINT = "trackline.project.entry_point"
PROJECT_ENV_MANAGER = "trackline.project.env_manager"
PROJECT_BACKEND = "trackline.project.backend"
PROJECT_VERSION = "trackline.project.version"  # the --version asked for
PROJECT_NAME = "trackline.project.name"  # the MLproject's name
DOCKER_IMAGE = "trackline.docker.image"
LOG_ARTIFACT_DIR = "logs"
LOG_FILE = "output.txt"

Status = Literal["FINISHED", "FAILED", "KILLED"]
_STATUSES = {
    "FINISHED": pb.RUN_STATUS_FINISHED,
    "FAILED": pb.RUN_STATUS_FAILED,
    "KILLED": pb.RUN_STATUS_KILLED,
}
logger = logging.getLogger("trackline.projects")


@dataclass(frozen=True)
class ProjectRunResult:
    run_id: str
    exit_code: int  # the command's; negative: the signal that ended it
    status: Status


def execute(
    client: TracklineClient,
    uri: str,
    *,
    entry_point: str = "main",
    params: Mapping[str, str] | None = None,
    version: str | None = None,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    run_name: str | None = None,
    env_manager: str | None = None,
    backend: str = "local",
    on_started: Callable[[str], None] | None = None,
    on_output: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> ProjectRunResult:
    """Runs the project at ``uri`` (a folder, or a git repository with ``version``;
    ``#subdirectory`` names the project inside) as a tracked run; see the module's docstring.

    ``env_manager`` None: docker for a docker_env project, uv (else virtualenv) for one that
    declares an environment, local otherwise. ``experiment_id`` or ``experiment_name`` (created
    when missing), else ``TRACKLINE_EXPERIMENT_ID`` / ``TRACKLINE_EXPERIMENT``, else "0".
    ``backend`` is recorded in the tags. ``on_started`` gets the run id before the
    environment is built; ``on_output`` each output line without its newline (None: stdout
    and stderr lines to this process's stdout and stderr). ``extra_tags`` win over the
    project's tags."""
    if experiment_id and experiment_name:
        raise ProjectError("expected an experiment id or an experiment name, not both")
    if env_manager is not None and env_manager not in ENV_MANAGERS:
        raise ProjectError(
            f"--env-manager {env_manager!r}: expected one of {', '.join(ENV_MANAGERS)}"
        )
    source = fetch_project(uri, version)
    try:
        project = load_project(source.directory)
        command = build_command(project.entry_point(entry_point), dict(params or {}))
        plan = plan_environment(project, env_manager)
        experiment = _experiment(client, experiment_id, experiment_name)
        tags = {
            SOURCE_NAME: source.name,
            SOURCE_TYPE: SOURCE_TYPE_PROJECT,
            PROJECT_ENTRY_POINT: entry_point,
            PROJECT_ENV_MANAGER: plan.manager,
            PROJECT_BACKEND: backend,
            **source.tags,
        }
        if version:
            tags[PROJECT_VERSION] = version
        if project.name:
            tags[PROJECT_NAME] = project.name
        if project.docker_env is not None:
            tags[DOCKER_IMAGE] = project.docker_env.image
        tags.update(extra_tags or {})
        run = client.create_run(experiment.experiment_id, run_name=run_name or "", tags=tags)
        return _run(client, run, experiment, source, command, plan, on_started, on_output, cancel)
    finally:
        source.remove()


def _experiment(
    client: TracklineClient, experiment_id: str | None, name: str | None
) -> pb.Experiment:
    experiment_id = experiment_id or (None if name else os.environ.get("TRACKLINE_EXPERIMENT_ID"))
    name = name or (None if experiment_id else os.environ.get("TRACKLINE_EXPERIMENT"))
    if not name:
        return client.get_experiment(experiment_id or "0")
    try:
        return client.get_experiment_by_name(name)
    except NotFound:
        try:
            return client.create_experiment(name)
        except AlreadyExists:  # created meanwhile by another run
            return client.get_experiment_by_name(name)


def _run(
    client: TracklineClient,
    run: pb.Run,
    experiment: pb.Experiment,
    source: Source,
    command: Command,
    plan: EnvironmentPlan,
    on_started: Callable[[str], None] | None,
    on_output: Callable[[str], None] | None,
    cancel: threading.Event | None,
) -> ProjectRunResult:
    """The part of ``execute`` after the run exists: whatever happens, the run is ended."""
    run_id = run.run_id
    log_dir = Path(tempfile.mkdtemp(prefix="trackline-log-"))
    status: Status = "FAILED"
    code = 1
    try:
        with (log_dir / LOG_FILE).open("w", encoding="utf-8", errors="replace") as log:
            runner = ProcessRunner(_sink(log, on_output), cancel)
            try:
                if command.params:
                    client.log_batch(run_id, params=command.params)
                if on_started is not None:
                    on_started(run_id)
                for warning in plan.warnings:
                    runner.emit("stderr", f"trackline: warning: {warning}")
                environment = build_environment(plan, runner, os.environ)
                child_env = _child_env(client, run_id, experiment)
                argv, env = environment.argv(command.text, child_env, source.directory)
                runner.emit("stderr", f"trackline: running in run {run_id}: {command.text}")
                try:
                    code = runner.run(argv, cwd=source.directory, env=env)
                finally:
                    if environment.docker is not None and (runner.cancelled or code != 0):
                        remove_container(run_id)
                status = "KILLED" if runner.cancelled else "FINISHED" if code == 0 else "FAILED"
                if status == "FAILED":
                    runner.emit("stderr", f"trackline: the command exited with status {code}")
            except BuildFailed as err:
                runner.emit("stderr", f"trackline: {err}")
                code = err.exit_code
            except Cancelled:
                status, code = "KILLED", -signal.SIGTERM
            except KeyboardInterrupt:
                status, code = "KILLED", -signal.SIGINT
                raise
    finally:
        try:
            _upload_log(client, run_id, log_dir / LOG_FILE)
        finally:
            now = int(time.time() * 1000)
            client.update_run(run_id, status=_STATUSES[status], end_time=now)
            shutil.rmtree(log_dir, ignore_errors=True)
    return ProjectRunResult(run_id, code, status)


def _child_env(client: TracklineClient, run_id: str, experiment: pb.Experiment) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRACKLINE_URI=client.uri,
        TRACKLINE_RUN_ID=run_id,
        TRACKLINE_EXPERIMENT_ID=experiment.experiment_id,
        TRACKLINE_EXPERIMENT=experiment.name,
        PYTHONUNBUFFERED="1",  # a Python command's lines as they are printed, not in blocks
    )
    if client.token:
        env["TRACKLINE_TOKEN"] = client.token
    tls = client.tls  # the command's own client trusts and presents what this one does
    for variable, path in (
        (CA_FILE_VARIABLE, tls.ca_file),
        (CLIENT_CERT_VARIABLE, tls.client_cert),
        (CLIENT_KEY_VARIABLE, tls.client_key),
    ):
        if path is not None:
            env[variable] = os.path.abspath(path)
    return env


def _sink(log: IO[str], on_output: Callable[[str], None] | None) -> Callable[[str, str], None]:
    def to_terminal(stream: str, line: str) -> None:
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(line + "\n")
        out.flush()

    def sink(stream: str, line: str) -> None:
        log.write(line + "\n")
        if on_output is None:
            to_terminal(stream, line)
        else:
            on_output(line)

    return sink


def _upload_log(client: TracklineClient, run_id: str, path: Path) -> None:
    """Stores the log as the run's artifact; a failure is logged, the run's outcome stays."""
    try:
        client.log_artifact(run_id, str(path), LOG_ARTIFACT_DIR)
    except (TracklineError, OSError) as err:
        logger.warning("trackline: the run's log was not stored as an artifact: %s", err)
