"""The package's public names: ``trackline.__all__`` lists exactly what ``trackline`` exports."""

from __future__ import annotations

import inspect

import trackline


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {
        name
        for name, value in vars(trackline).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(trackline.__all__) == public
    assert trackline.__all__ == sorted(trackline.__all__)


def test_history_points_are_named_and_unpack_as_before() -> None:
    point = trackline.MetricPoint(3, 1234, 0.5)
    step, ts, value = point
    assert (step, ts, value) == (point.step, point.timestamp, point.value) == (3, 1234, 0.5)
    assert point == (3, 1234, 0.5) and point[::2] == (3, 0.5)
