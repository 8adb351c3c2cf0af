"""Refused calls, checked the way every hardening test checks them: a real status and reason,
a short message with nothing of the server's internals in it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from trackline import TracklineClient
from trackline._status import parse
from trackline.v1 import tracking_pb2 as tpb

from .servers import ServerProcess

_SQL_WORDS = ("SELECT", "INSERT", "UPDATE ", "DELETE FROM", "[parameters", "[SQL")


def store_fragments(server: ServerProcess) -> list[str]:
    """Parts of the store's location that must never appear in a message."""
    location = server.store_uri.split("///", 1)[-1] if "///" in server.store_uri else ""
    database = server.store_uri.rsplit("/", 1)[-1]
    return [f for f in (location, database, str(server.artifacts.parent)) if f]


def refused(
    server: ServerProcess, call: Callable[..., Any], request: Any, **kwargs: Any
) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of a call that must fail; checks that its message is
    short and clean of internals."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30, **kwargs)
    err: Any = info.value
    message = err.details() or ""
    assert err.code() != grpc.StatusCode.UNKNOWN, message
    assert len(message) <= 1024, len(message)
    for word in _SQL_WORDS:
        assert word not in message, message
    for fragment in store_fragments(server):
        assert fragment not in message, message
    rich = parse(err.trailing_metadata())
    assert rich.reason, message
    for description in rich.field_violations.values():
        assert len(description) <= 1024
    return err.code(), rich.reason


def new_run(client: TracklineClient, **kwargs: Any) -> tuple[str, str]:
    """(experiment id, run id) of a new run in a new experiment; ``kwargs`` go to CreateRun."""
    # Raw stub calls: no request id, so that no applied request (nor its pruning) is recorded.
    exp = client.stub.CreateExperiment(tpb.CreateExperimentRequest(name="e")).experiment
    run = client.stub.CreateRun(tpb.CreateRunRequest(experiment_id=exp.experiment_id, **kwargs))
    return exp.experiment_id, run.run.run_id
