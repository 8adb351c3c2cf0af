"""Each series' latest value, as tracking shows it on a run (GetRun, SearchRuns): the reads of
``latest_metrics``, which the writer's flushes keep current."""

from __future__ import annotations

import math
from typing import Any

from trackline.v1 import resources_pb2 as pb

from ..models import latest_metrics
from ..sql import in_order_of, octets

METRIC_OVERHEAD = 48  # bound of a latest metric's protobuf framing (value, step, timestamp)

_LM = latest_metrics.c
# (position of the run in ``ids``, key, value, step, timestamp, estimated reply bytes)
OF_RUNS = in_order_of(
    latest_metrics,
    _LM.run_id,
    (_LM.key, _LM.value, _LM.step, _LM.timestamp),
    lambda d: octets(_LM.key, d) + METRIC_OVERHEAD,
)


def put(run: pb.Run, row: Any) -> None:
    """Adds an ``OF_RUNS`` row to the run's latest metrics; a NaN (stored as NULL) as NaN."""
    value = math.nan if row[2] is None else row[2]
    run.latest_metrics.add(key=row[1], value=value, step=row[3], timestamp=row[4])
