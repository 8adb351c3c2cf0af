"""Runs as a pandas DataFrame, in the shape of MLflow's ``search_runs`` (pandas is optional:
only this needs it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from trackline.v1 import resources_pb2 as pb

# The run's own columns, in MLflow's order, then one per metric, param and tag key.
_OWN = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


def runs_frame(found: Sequence[pb.Run]) -> Any:
    """One row per run: ``run_id``, ``experiment_id``, ``status`` ("FINISHED", ...),
    ``artifact_uri``, ``start_time`` and ``end_time`` (UTC datetimes; NaT while running), then
    ``metrics.<key>`` (float, NaN where a run lacks it), ``params.<key>`` and ``tags.<key>``
    (str, None where a run lacks it), each group by key. Raises ImportError naming the package
    when pandas is not installed."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "output_format='pandas' needs pandas: pip install 'trackline[pandas]'"
        ) from None
    rows: list[dict[str, Any]] = []
    metric_keys: set[str] = set()
    param_keys: set[str] = set()
    tag_keys: set[str] = set()
    for run in found:
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "experiment_id": run.experiment_id,
            "status": pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_"),
            "artifact_uri": run.artifact_uri,
            "start_time": run.start_time,
            "end_time": run.end_time if run.HasField("end_time") else math.nan,
        }
        for m in run.latest_metrics:
            row[f"metrics.{m.key}"] = m.value
            metric_keys.add(m.key)
        for p in run.params:
            row[f"params.{p.key}"] = p.value
            param_keys.add(p.key)
        for t in run.tags:
            row[f"tags.{t.key}"] = t.value
            tag_keys.add(t.key)
        rows.append(row)
    columns = [
        *_OWN,
        *(f"metrics.{k}" for k in sorted(metric_keys)),
        *(f"params.{k}" for k in sorted(param_keys)),
        *(f"tags.{k}" for k in sorted(tag_keys)),
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    for key in metric_keys:
        frame[f"metrics.{key}"] = frame[f"metrics.{key}"].astype("float64")
    for prefix, keys in (("params", param_keys), ("tags", tag_keys)):
        for key in keys:
            column = f"{prefix}.{key}"
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame
