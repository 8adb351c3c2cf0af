"""Trackline: experiment tracking over gRPC."""

from . import data as data  # trackline.data.from_pandas(...) after ``import trackline``
from ._artifacts import FileInfo
from ._client import MetricPoint, TracklineClient
from ._exceptions import (
    Aborted,
    AlreadyExists,
    BatchRejected,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    TracklineError,
    Unauthenticated,
    Unavailable,
)
from ._fluent import (
    active_run,
    download_artifacts,
    end_run,
    flush,
    list_artifacts,
    load_dict,
    load_text,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    register_model,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)
from ._registry import ModelEventStream
from ._tls import InvalidTlsSettings
from ._tokens import CreatedToken, TokenInfo
from ._uri import InvalidUri
from .models import load_model, log_model  # third-party modules load when one runs

__all__ = [
    "Aborted",
    "AlreadyExists",
    "BatchRejected",
    "CreatedToken",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FileInfo",
    "Internal",
    "InvalidArgument",
    "InvalidTlsSettings",
    "InvalidUri",
    "MetricPoint",
    "ModelEventStream",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "TokenInfo",
    "TracklineClient",
    "TracklineError",
    "Unauthenticated",
    "Unavailable",
    "active_run",
    "download_artifacts",
    "end_run",
    "flush",
    "list_artifacts",
    "load_dict",
    "load_model",
    "load_text",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_text",
    "register_model",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]


def __getattr__(name: str) -> object:
    """``trackline.sklearn`` and ``trackline.pyfunc`` without importing them first, as
    ``mlflow.sklearn``: the flavor module is imported on first use."""
    if name in ("sklearn", "pyfunc"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
