"""Tracking's rows as the proto messages every client reads."""

from __future__ import annotations

from typing import cast

from trackline.v1 import resources_pb2 as pb

from .experiments import ExperimentRow
from .runs import RunRow


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


def run(r: RunRow) -> pb.Run:
    msg = pb.Run(
        run_id=r.run_id,
        experiment_id=str(r.experiment_id),
        run_name=r.run_name,
        status=cast(pb.RunStatus, r.status),
        start_time=r.start_time,
        lifecycle_stage=cast(pb.LifecycleStage, r.lifecycle_stage),
        parent_run_id=r.parent_run_id or "",
        artifact_uri=r.artifact_uri,
        params=[pb.Param(key=k, value=v) for k, v in sorted(r.params.items())],
        tags=[pb.Tag(key=k, value=v) for k, v in sorted(r.tags.items())],
        latest_metrics=[
            pb.Metric(key=k, value=v, step=s, timestamp=t)
            for k, v, s, t in sorted(r.latest_metrics)
        ],
    )
    if r.end_time is not None:
        msg.end_time = r.end_time
    return msg
