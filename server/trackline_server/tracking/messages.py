"""Tracking's rows as the proto messages every client reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from trackline.v1 import resources_pb2 as pb

from .experiments import ExperimentRow


def experiment(e: ExperimentRow) -> pb.Experiment:
    return pb.Experiment(
        experiment_id=str(e.experiment_id),
        name=e.name,
        artifact_location=e.artifact_location,
        lifecycle_stage=cast(pb.LifecycleStage, e.lifecycle_stage),
        creation_time=e.creation_time,
        last_update_time=e.last_update_time,
        tags=[pb.Tag(key=k, value=v) for k, v in sorted(e.tags.items())],
    )


def run(add: Callable[..., pb.Run], row: Sequence[Any]) -> pb.Run:
    """The message of a run's own row (``runs.COLUMNS``), made by ``add`` (``pb.Run``, or a
    repeated field's ``add``); its params, tags and metrics are added after."""
    run_id, experiment_id, name, status, start, end, stage, parent, artifact_uri, user = row
    msg = add(
        run_id=run_id,
        experiment_id=str(experiment_id),
        run_name=name,
        status=status,
        start_time=start,
        lifecycle_stage=stage,
        parent_run_id=parent or "",
        artifact_uri=artifact_uri,
        user_id=user,
    )
    if end is not None:
        msg.end_time = end
    return msg
