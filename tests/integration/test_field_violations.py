"""Issue 12: a request with several problems hears of all of them in one INVALID_ARGUMENT, on a
real server (SQLite and PostgreSQL): a BadRequest field violation per problem, bounded, the
first problem's reason on top and a message naming it and the count; nothing of the request
is stored."""

from __future__ import annotations

import re

import grpc
import pytest
from trackline import InvalidArgument, NotFound, TracklineClient
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.refusals import refused
from tests.support.servers import ServerProcess
from tests.support.streams import Stream


def test_log_batch_reports_every_problem(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    metrics = [
        pb.MetricSeries(key="", values=[1.0]),
        pb.MetricSeries(key="b", steps=[1, 2], values=[1.0]),
        pb.MetricSeries(key="c", values=[2.0]),
    ]
    with pytest.raises(InvalidArgument) as info:
        client.log_batch(run.run_id, metrics=metrics, params={"": 1, "p": 2}, tags={"t\n": "v"})
    err = info.value
    # In the order of the checks: each series' columns, then the keys, params and tags.
    assert err.violations == [
        ("metrics[1].steps", "metrics[1].steps has 2 entries but values has 1"),
        ("metrics[0].key", "key must not be empty"),
        ("params[0].key", "key must not be empty"),
        ("tags[0].key", "key contains a control character"),
    ]
    assert err.field_violations == dict(err.violations)
    assert err.reason == "COLUMN_LENGTH_MISMATCH"
    assert err.message == (
        "metrics[1].steps has 2 entries but values has 1 (and 3 more problems: each listed as a"
        " field violation)"
    )
    got = client.get_run(run.run_id)
    assert not got.params and not got.tags and not got.latest_metrics  # nothing stored
    request = tpb.LogBatchRequest(run_id=run.run_id, metrics=metrics)
    assert refused(server, client.stub.LogBatch, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "COLUMN_LENGTH_MISMATCH",
    )


def test_one_problem_is_reported_as_before(client: TracklineClient) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.log_batch(run.run_id, params={"": 1})
    err = info.value
    assert (err.reason, err.message) == ("INVALID_KEY", "key must not be empty")
    assert err.violations == [("params[0].key", "key must not be empty")]


def test_a_tag_with_a_bad_key_and_value_gets_both(client: TracklineClient) -> None:
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.log_batch(run.run_id, tags={"": "v" * 65_537, "ok": "v"})
    assert [f for f, _ in info.value.violations] == ["tags[0].key", "tags[0].value"]
    assert info.value.reason == "INVALID_KEY"


def test_create_run_reports_every_problem(server: ServerProcess, client: TracklineClient) -> None:
    exp_id = client.create_experiment("e").experiment_id
    with pytest.raises(InvalidArgument) as info:
        client.create_run(
            exp_id, run_name="n" * 501, start_time=-1, tags={"": "v", "ok": "v", "b\x01": "w"}
        )
    err = info.value
    assert [f for f, _ in err.violations] == [
        "run_name",
        "start_time",
        "tags[0].key",
        "tags[2].key",
    ]
    assert err.reason == "INVALID_NAME"
    assert err.message.startswith("run_name: run name is longer than 500 characters")
    assert not list(client.search_runs([exp_id]))


def test_create_experiment_and_update_run_report_every_problem(
    client: TracklineClient,
) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.create_experiment(" ", artifact_location="a\x00", tags={"": "v"})
    fields = [f for f, _ in info.value.violations]
    assert fields == ["name", "artifact_location", "tags[0].key"]
    run = client.create_run()
    with pytest.raises(InvalidArgument) as info:
        client.update_run(run.run_id, status=99, end_time=-5, run_name="\x00")
    assert [f for f, _ in info.value.violations] == ["status", "end_time", "run_name"]
    assert info.value.reason == "INVALID_STATUS"


def test_not_found_is_not_mixed_with_invalid_arguments(client: TracklineClient) -> None:
    """A status carries one code: a run id no run can have is NOT_FOUND alone when it is the
    first problem, and the INVALID_ARGUMENT problems found before it win otherwise."""
    with pytest.raises(NotFound) as info:
        client.log_batch("\x00", params={"": 1})
    assert info.value.reason == "RUN_NOT_FOUND"


def test_many_problems_are_bounded_and_counted(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    metrics = [pb.MetricSeries(key="", values=[float(i)]) for i in range(250)]
    for _ in range(20):  # trailers stay well under grpc's 8 KiB soft limit: never refused
        with pytest.raises(InvalidArgument) as info:
            client.log_batch(run.run_id, metrics=metrics)
    err = info.value
    assert [f for f, _ in err.violations] == [f"metrics[{i}].key" for i in range(100)]
    assert err.message == (
        "metrics[0].key: key must not be empty (and 249 more problems: 250 in all, the first"
        " 100 listed as field violations)"
    )
    long_ones = [pb.MetricSeries(key="k", steps=[1, 2], values=[1.0]) for _ in range(300)]
    with pytest.raises(InvalidArgument) as info:
        client.log_batch(run.run_id, metrics=long_ones)
    listed = len(info.value.violations)
    assert 50 <= listed <= 100  # as many as fit in the status's budget
    assert f"300 in all, the first {listed} listed" in info.value.message


def test_a_stream_block_rejection_names_the_first_problem_and_the_count(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-violations")
    blk = ipb.SeriesBlock(
        run_ids=[run.run_id], keys=["a", "", "b\n", ""], lengths=[1, 0, 1, 1],
        values=[1.0, 2.0, 3.0], run_index=[0, 0, 0, 5],
    )  # fmt: skip
    s.send(ipb.StreamMetricsRequest(seq=1, block=blk))
    (rejection,) = [r for a in s.until(1) for r in a.rejections]
    assert rejection.reason == "EMPTY_SERIES"
    assert rejection.message.startswith("block.lengths[1] is 0; a series needs at least one")
    # lengths[1], keys[1], keys[2], keys[3] and run_index[3]
    assert re.search(r"and 4 more problems", rejection.message), rejection.message
    s.close()
