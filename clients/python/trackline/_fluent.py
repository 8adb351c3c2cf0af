"""The familiar module-level API over one process-wide TracklineClient."""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, overload

import grpc

from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import resources_pb2 as pb

from . import _artifact_content as content
from ._artifact_uris import download_uri
from ._artifacts import FileInfo
from ._client import TracklineClient
from ._context import system_tags
from ._exceptions import AlreadyExists, FailedPrecondition, NotFound
from ._frames import runs_frame
from ._sender import MetricSender
from ._uri import resolve_uri
from .data import Dataset

_uri: str | None = None
_client: TracklineClient | None = None
_sender: MetricSender | None = None
_experiment_id: str | None = None
_runs: list[str] = []
logger = logging.getLogger("trackline")


def set_tracking_uri(uri: str) -> None:
    """Points the module-level API at another server (``host[:port]``, ``http://``,
    ``https://``, ...: see ``TracklineClient``; a malformed ``uri`` raises ``InvalidUri`` and
    changes nothing); the chosen experiment is forgotten, since experiment ids belong to one
    server. Metric points still buffered for the previous server are sent to it first (for up
    to 30 seconds)."""
    global _uri, _client, _experiment_id, _sender
    resolve_uri(uri)
    old, _sender = _sender, None
    _uri, _client, _experiment_id = uri, None, None
    if old is not None:
        old.close(timeout=30.0)


def client() -> TracklineClient:
    global _client
    if _client is None:
        _client = TracklineClient(_uri)
    return _client


def sender() -> MetricSender:
    """The process's metric stream to the tracking server (created on first use)."""
    global _sender
    if _sender is None:
        c = client()
        tls = c.tls
        _sender = MetricSender(
            c.uri,
            token=c.token,
            ca_file=tls.ca_file,
            client_cert=tls.client_cert,
            client_key=tls.client_key,
        )
    return _sender


def set_experiment(name: str) -> pb.Experiment:
    """Makes ``name`` the experiment of new runs, creating it when missing."""
    global _experiment_id
    try:
        exp = client().get_experiment_by_name(name)
    except NotFound:
        exp = client().create_experiment(name)
    _experiment_id = exp.experiment_id
    return exp


@contextmanager
def start_run(
    run_id: str | None = None,
    *,
    run_name: str = "",
    nested: bool = False,
    tags: Mapping[str, str] | None = None,
) -> Iterator[pb.Run]:
    """Starts (or resumes, by ``run_id`` or TRACKLINE_RUN_ID) a run for the block; the run ends
    FINISHED, or FAILED when the block raises. ``nested`` makes it a child of the active run.
    Resuming a deleted run, or a run of a deleted experiment, raises ``FailedPrecondition``
    (reason RUN_DELETED or EXPERIMENT_DELETED) before anything is logged or changed.

    A new run records its user (``TRACKLINE_USER``, else the OS user) and system tags: the
    source (``trackline.source.name``, ``.type``, ``.entry_point``) and, inside a git work
    tree, ``trackline.source.git.commit``, ``.branch``, ``.dirty`` and ``.repo_url``; ``tags``
    given here win over them."""
    if _runs and not nested:
        raise RuntimeError(f"run {_runs[-1]} is active; end it or pass nested=True")
    resume = run_id or (None if _runs else os.environ.get("TRACKLINE_RUN_ID"))
    if resume:
        run = _resumable(client().get_run(resume))
    else:
        exp = _experiment_id or os.environ.get("TRACKLINE_EXPERIMENT_ID") or "0"
        if not _experiment_id and os.environ.get("TRACKLINE_EXPERIMENT"):
            exp = set_experiment(os.environ["TRACKLINE_EXPERIMENT"]).experiment_id
        run = client().create_run(
            exp,
            run_name=run_name,
            tags={**system_tags(), **(tags or {})},
            parent_run_id=_runs[-1] if _runs else "",
        )
    _runs.append(run.run_id)
    try:
        yield run
    except BaseException:
        _end_run(pb.RUN_STATUS_FAILED, raise_flush_errors=False)
        raise
    if _runs and _runs[-1] == run.run_id:
        end_run()


def _resumable(run: pb.Run) -> pb.Run:
    """``run``, or FailedPrecondition when it or its experiment is deleted: ending it would
    otherwise mark a deleted run FINISHED, and its points would be refused one by one."""
    if run.lifecycle_stage == pb.LIFECYCLE_STAGE_DELETED:
        raise FailedPrecondition(
            f"run {run.run_id!r} is deleted; restore it first (trackline runs restore"
            f" {run.run_id})",
            grpc.StatusCode.FAILED_PRECONDITION,
            "RUN_DELETED",
        )
    exp = client().get_experiment(run.experiment_id)
    if exp.lifecycle_stage == pb.LIFECYCLE_STAGE_DELETED:
        raise FailedPrecondition(
            f"run {run.run_id!r} belongs to experiment {exp.experiment_id!r}, which is deleted;"
            f" restore it first (trackline experiments restore {exp.experiment_id})",
            grpc.StatusCode.FAILED_PRECONDITION,
            "EXPERIMENT_DELETED",
        )
    return run


def active_run() -> str | None:
    return _runs[-1] if _runs else None


def _run() -> str:
    if not _runs:
        raise RuntimeError("no active run: call start_run() first")
    return _runs[-1]


def end_run(status: int = pb.RUN_STATUS_FINISHED) -> None:
    """Waits until the server has stored every metric point logged so far, then ends the
    active run with ``status``. A rejected batch is raised (``BatchRejected``) after the run
    is ended."""
    _end_run(status, raise_flush_errors=True)


def _end_run(status: int, *, raise_flush_errors: bool) -> None:
    """Flushes, then ends the run. On the way out of a failing block (``raise_flush_errors``
    false) the flush waits at most 30 s and its errors are only logged, so that the block's
    own exception is what the caller sees."""
    if not _runs:
        return
    error: Exception | None = None
    if _sender is not None:
        try:
            _sender.flush(None if raise_flush_errors else 30.0)
        except Exception as err:
            error = err
    client().update_run(_runs.pop(), status=status, end_time=int(time.time() * 1000))
    if error is not None:
        if raise_flush_errors:
            raise error
        logger.error("trackline: metric points were not stored: %s", error)


def log_metric(
    key: str,
    value: float,
    step: int = 0,
    *,
    timestamp: int | None = None,
    synchronous: bool = False,
) -> None:
    """Logs one point of metric ``key`` for the active run. Returns at once: the point is
    sent in the background (see ``flush``), unless ``synchronous``, which waits until it is
    stored. ``timestamp`` is in milliseconds since the epoch (default: now). Blocks only when
    the server has been unreachable for long (see ``MetricSender``)."""
    if not _runs:
        _run()
    s = _sender if _sender is not None else sender()
    s.log(_runs[-1], key, value, step, timestamp)
    if synchronous:
        s.flush()


def log_metrics(
    metrics: Mapping[str, float],
    step: int = 0,
    *,
    timestamp: int | None = None,
    synchronous: bool = False,
) -> None:
    """Logs one point per key of ``metrics`` at ``step`` (see ``log_metric``)."""
    run_id = _run()
    s = _sender if _sender is not None else sender()
    s.log_many(run_id, metrics, step, timestamp)
    if synchronous:
        s.flush()


def flush(timeout: float | None = None) -> None:
    """Waits until every metric point logged so far is stored. Raises ``TimeoutError`` after
    ``timeout`` seconds and ``BatchRejected`` for points the server refused (e.g. because the
    run was deleted); those points are not retried."""
    if _sender is not None:
        _sender.flush(timeout)


def log_param(key: str, value: Any) -> None:
    client().log_param(_run(), key, value)


def log_params(params: Mapping[str, Any]) -> None:
    client().log_batch(_run(), params=params)


def set_tag(key: str, value: Any) -> None:
    client().set_tag(_run(), key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    client().log_batch(_run(), tags=tags)


def log_input(
    dataset: Dataset, context: str | None = None, tags: Mapping[str, Any] | None = None
) -> None:
    """Records ``dataset`` (see ``trackline.data``) as an input of the active run, used for
    ``context`` ("training", "eval", ...) and with ``tags``, as ``mlflow.log_input`` does.
    Logging it again changes the context and sets the tags given."""
    client().log_inputs(_run(), [dataset.to_input(context, tags)])


def register_model(
    model_uri: str, name: str, *, tags: Mapping[str, Any] | None = None, description: str = ""
) -> rpb.ModelVersion:
    """Registers the artifacts at ``model_uri`` as the next version of the registered model
    ``name``, creating the model when it has none yet, as ``mlflow.register_model`` does;
    ``tags`` and ``description`` are the version's. A ``runs:/<run_id>/<path>`` URI records
    its run as the version's (NotFound RUN_NOT_FOUND when there is no such run); any other
    URI (``s3://...``, a path) is kept as the source as given."""
    try:
        client().create_registered_model(name)
    except AlreadyExists:
        pass  # the usual case after the first version: the model is there
    return client().create_model_version(
        name, model_uri, _run_id_of(model_uri), tags=tags, description=description
    )


def _run_id_of(model_uri: str) -> str:
    """The run id of a ``runs:/<run_id>/<path>`` URI; "" for another URI."""
    if not model_uri.startswith("runs:/"):
        return ""
    run_id = model_uri[len("runs:/") :].lstrip("/").split("/", 1)[0]
    if not run_id:
        raise ValueError(f"{model_uri!r:.200} names no run: use runs:/<run_id>/<path>")
    return run_id


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Uploads a file to ``<artifact_path>/<its name>`` among the active run's artifacts."""
    client().log_artifact(_run(), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Uploads the files under ``local_dir`` to the same paths under ``artifact_path``."""
    client().log_artifacts(_run(), local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    """Stores ``text`` (UTF-8) as the active run's artifact ``artifact_file``, e.g.
    ``"notes/summary.txt"``."""
    _log_bytes(text.encode("utf-8"), artifact_file)


def log_dict(dictionary: Any, artifact_file: str) -> None:
    """Stores ``dictionary`` as YAML when ``artifact_file`` ends in ``.yaml`` or ``.yml``
    (PyYAML needed), as JSON otherwise."""
    _log_bytes(content.dict_bytes(dictionary, artifact_file), artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Stores a matplotlib or plotly figure, in the format ``artifact_file``'s extension
    names (``.png``, ``.svg``, ``.pdf``; ``.html`` for plotly)."""
    _log_bytes(content.figure_bytes(figure, artifact_file), artifact_file)


def log_image(image: Any, artifact_file: str) -> None:
    """Stores a numpy array (uint8, or floats in [0, 1]) or a PIL image (Pillow needed) in
    the format ``artifact_file``'s extension names."""
    _log_bytes(content.image_bytes(image, artifact_file), artifact_file)


def _log_bytes(data: bytes, artifact_file: str) -> None:
    directory, name = posixpath.split(artifact_file)
    if not name:
        raise ValueError(f"artifact_file names a file, not a directory: {artifact_file!r}")
    run_id = _run()
    with tempfile.TemporaryDirectory(prefix="tl-") as tmp:
        local = os.path.join(tmp, name)
        with open(local, "wb") as out:
            out.write(data)
        client().log_artifact(run_id, local, directory or None)


def list_artifacts(run_id: str | None = None, path: str | None = None) -> list[FileInfo]:
    """The files and directories directly under ``path`` of the run's artifacts (the active
    run's by default)."""
    return client().list_artifacts(run_id or _run(), path)


def download_artifacts(
    artifact_uri: str | None = None,
    *,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | os.PathLike[str] | None = None,
) -> str:
    """Downloads artifacts into ``dst_path`` (a new temporary directory when None) and
    returns their local path: those at ``artifact_uri`` (``runs:/``, ``models:/``,
    ``s3://``, ``file://`` or a local path; see ``_artifact_uris``), or the run's at
    ``artifact_path`` (all of them when None)."""
    if artifact_uri is not None:
        if run_id is not None or artifact_path is not None:
            raise ValueError("give either artifact_uri or run_id (with artifact_path), not both")
        return download_uri(client(), artifact_uri, dst_path)
    if run_id is None:
        raise ValueError("give artifact_uri, or run_id with an optional artifact_path")
    return client().download_artifacts(run_id, artifact_path or "", dst_path)


def load_text(artifact_uri: str) -> str:
    """The text (UTF-8) of the artifact at ``artifact_uri``."""
    return _load_bytes(artifact_uri).decode("utf-8")


def load_dict(artifact_uri: str) -> dict[str, Any]:
    """The dictionary in the JSON or YAML (by extension) artifact at ``artifact_uri``."""
    return content.parse_dict(_load_bytes(artifact_uri), artifact_uri)


def _load_bytes(artifact_uri: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tl-") as tmp:
        local = download_uri(client(), artifact_uri, tmp)
        if os.path.isdir(local):
            raise IsADirectoryError(f"{artifact_uri!r} is a directory, not a file")
        with open(local, "rb") as src:
            return src.read()


@overload
def search_runs(
    filter: str = "",
    *,
    experiment_ids: list[str] | None = None,
    experiment_names: list[str] | None = None,
    order_by: list[str] | None = None,
    max_results: int | None = 1000,
    output_format: Literal["list"] = "list",
) -> list[pb.Run]: ...


@overload
def search_runs(
    filter: str = "",
    *,
    experiment_ids: list[str] | None = None,
    experiment_names: list[str] | None = None,
    order_by: list[str] | None = None,
    max_results: int | None = 1000,
    output_format: Literal["pandas"],
) -> Any: ...


def search_runs(
    filter: str = "",
    *,
    experiment_ids: list[str] | None = None,
    experiment_names: list[str] | None = None,
    order_by: list[str] | None = None,
    max_results: int | None = 1000,
    output_format: Literal["list", "pandas"] = "list",
) -> list[pb.Run] | Any:
    """Runs matching ``filter`` in the given experiments (by id or name); with neither, in the
    current experiment, or every experiment when none was set. ``output_format="pandas"``
    returns a ``pandas.DataFrame`` shaped as MLflow's (``runs_frame``)."""
    if output_format not in ("list", "pandas"):
        raise ValueError(f"output_format must be 'list' or 'pandas', not {output_format!r}")
    ids = list(experiment_ids or [])
    ids += [client().get_experiment_by_name(n).experiment_id for n in experiment_names or []]
    if not ids and _experiment_id is not None:
        ids = [_experiment_id]
    found = list(client().search_runs(ids, filter, order_by=order_by, max_results=max_results))
    return runs_frame(found) if output_format == "pandas" else found
