"""The ``trackline`` command's formatting of stored values: no stored value may raise."""

from __future__ import annotations

import re

import pytest
from trackline import cli
from trackline._cli_format import local_time
from trackline.v1 import resources_pb2 as pb

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("ms", [INT64_MAX, -(2**63), 10**17, -(10**17), -5, 1])
def test_time_of_any_int64_does_not_raise(ms: int) -> None:
    assert local_time(ms)


def test_time_out_of_range_is_shown_raw() -> None:
    assert local_time(INT64_MAX) == f"{INT64_MAX} ms"
    assert local_time(0) == "-"


@pytest.mark.parametrize("status", [99, -5, 2**31 - 1, -(2**31)])
def test_status_outside_the_enum_is_shown_raw(status: int) -> None:
    run = pb.Run(status=status)  # type: ignore[arg-type]
    assert cli._status(run) == f"UNKNOWN({status})"
    assert cli._status(pb.Run(status=pb.RUN_STATUS_FAILED)) == "FAILED"


def test_lifecycle_stage_outside_the_enum_is_shown_raw() -> None:
    exp = pb.Experiment(lifecycle_stage=7)  # type: ignore[arg-type]
    assert cli._stage(exp) == "unknown(7)"


def test_duration_of_odd_times_does_not_raise() -> None:
    run = pb.Run(start_time=INT64_MAX, end_time=-(2**63))
    assert cli._duration(run) == "0.0s"
    run = pb.Run(start_time=-(2**63), end_time=INT64_MAX)
    assert cli._duration(run).endswith("m")


def test_cells_are_escaped_and_cut(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [
        pb.Run(run_id="a", run_name="x" * 10_000, status=99, start_time=INT64_MAX),  # type: ignore[arg-type]
        pb.Run(run_id="b", run_name="evil\x1b[2J\nname\x85", start_time=-5),
        pb.Run(run_id="c", run_name="plain", status=pb.RUN_STATUS_RUNNING),
    ]
    cli._print_runs(runs, ["params.p"], as_json=False)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4  # the header and one line per run, whatever the names hold
    assert "\x1b" not in "".join(out) and "evil\\x1b[2J\\nname\\x85" in out[2]
    assert max(len(line) for line in out) < 250
    assert "UNKNOWN(99)" in out[1] and f"{INT64_MAX} ms" in out[1]
    assert "plain" in out[3] and "RUNNING" in out[3]


def test_show_escapes_values(capsys: pytest.CaptureFixture[str]) -> None:
    run = pb.Run(run_id="r", status=-5, start_time=INT64_MAX)  # type: ignore[arg-type]
    run.tags.add(key="note\n", value="two\nlines")
    cli._show_run(run, as_json=False)
    out = capsys.readouterr().out
    assert re.search(r"tags\.note\\n +two\\nlines\n", out) and "UNKNOWN(-5)" in out
