"""Trackline: experiment tracking over gRPC."""

from ._client import TracklineClient
from ._exceptions import (
    AlreadyExists,
    BatchRejected,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TracklineError,
    Unauthenticated,
    Unavailable,
)
from ._fluent import (
    active_run,
    end_run,
    flush,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)
from ._uri import InvalidUri

__all__ = [
    "AlreadyExists",
    "BatchRejected",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidUri",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TracklineClient",
    "TracklineError",
    "Unauthenticated",
    "Unavailable",
    "active_run",
    "end_run",
    "flush",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]
