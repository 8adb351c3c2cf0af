"""Metric points as a stream batch carries them: a SeriesBlock built from whole series."""

from __future__ import annotations

from collections.abc import Sequence

from trackline.v1 import ingest_pb2 as ipb

# (run_id, key, rank, steps, timestamps, values) of one series; an empty steps or timestamps
# column means the server's default (step 0, the receive time).
Series = tuple[str, str, int, Sequence[int], Sequence[int], Sequence[float]]


def block(*series: Series) -> ipb.SeriesBlock:
    """A block holding ``series`` in order, one run id per series. Columns are joined as they
    are, so series whose columns disagree in length make a block the server refuses (as the
    same series sent alone would be)."""
    return ipb.SeriesBlock(
        run_ids=[s[0] for s in series],
        keys=[s[1] for s in series],
        ranks=[s[2] for s in series],
        lengths=[len(s[5]) for s in series],
        steps=[step for s in series for step in s[3]],
        timestamps=[stamp for s in series for stamp in s[4]],
        values=[value for s in series for value in s[5]],
    )
