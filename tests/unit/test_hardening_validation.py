"""Issue 9 (errors): the one mapping of failures, fed with real driver errors, and the checks
of validation.py at their edges. Issue 12: a request's problems gathered into one refusal
(validation.Problems), bounded, and read back by the client."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from trackline import InvalidArgument as ClientInvalidArgument
from trackline import _status
from trackline._exceptions import from_rpc_error
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb
from trackline_server import errors, page_tokens, validation
from trackline_server.errors import (
    InvalidArgument,
    ManyProblems,
    NotFound,
    TracklineError,
    from_exception,
    shown,
)
from trackline_server.metrics import blocks
from trackline_server.tracking.service import TrackingService
from trackline_server.transport import unit_of_work, writes
from trackline_server.transport.grpc_server import method_handlers, method_name

from tests.support.databases import PG_URL
from tests.support.rpc_errors import FailedCall


def failure(url: str, work: Callable[[AsyncConnection], Awaitable[Any]], **kw: Any) -> Exception:
    """The exception ``work`` raises in a transaction on ``url``."""

    async def go() -> Exception:
        engine = create_async_engine(url, **kw)
        try:
            async with engine.begin() as conn:
                await work(conn)
        except Exception as exc:
            return exc
        finally:
            await engine.dispose()
        raise AssertionError("no failure")

    return asyncio.run(go())


def mapped(exc: Exception, caplog: pytest.LogCaptureFixture) -> TracklineError:
    """``from_exception(exc)``, checked to say nothing of the driver's text, to name an error
    id, and to log that id."""
    with caplog.at_level(logging.WARNING, logger="trackline.errors"):
        err = from_exception(exc, "the probe")
    match = re.search(r"error id ([0-9a-f]{12})", err.message)
    assert match, err.message
    assert match.group(1) in caplog.text
    for word in ("SELECT", "INSERT", "[parameters", "[SQL", "sqlite", "asyncpg", "/"):
        assert word not in err.message, err.message
    return err


def _sqlite_file(tmp_path: Path) -> str:
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return str(path)


async def _insert(conn: AsyncConnection) -> None:
    await conn.execute(text("INSERT INTO t VALUES (1)"))


def test_sqlite_read_only_is_store_read_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///file:{_sqlite_file(tmp_path)}?mode=ro&uri=true"
    err = mapped(failure(url, _insert), caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_READ_ONLY")
    assert "STORE_READ_ONLY" in caplog.text and caplog.records[-1].levelname == "WARNING"


def test_sqlite_full_is_store_full(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def fill(conn: AsyncConnection) -> None:
        await conn.execute(text("PRAGMA max_page_count = 3"))
        for _ in range(100):
            await conn.execute(text("INSERT INTO t VALUES (randomblob(4000))"))

    err = mapped(failure(f"sqlite+aiosqlite:///{_sqlite_file(tmp_path)}", fill), caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_FULL")


def test_sqlite_locked_is_store_busy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _sqlite_file(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        exc = failure(f"sqlite+aiosqlite:///{path}", _insert, connect_args={"timeout": 0.05})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = mapped(exc, caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_BUSY")


def test_refused_postgresql_connection_is_store_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def anything(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT 1"))

    exc = failure("postgresql+asyncpg://u:p@127.0.0.1:1/db", anything)
    err = mapped(exc, caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")


needs_pg = pytest.mark.skipif(not PG_URL, reason="TRACKLINE_TEST_PG_URL is not set")


@needs_pg
def test_postgresql_statement_timeout_is_query_too_expensive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def slow(conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL statement_timeout = 10"))
        await conn.execute(text("SELECT pg_sleep(2)"))

    err = mapped(failure(PG_URL, slow), caplog)
    assert (err.grpc_code, err.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "QUERY_TOO_EXPENSIVE",
    )


@needs_pg
def test_postgresql_dropped_connection_is_store_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def dropped(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    err = mapped(failure(PG_URL, dropped), caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")


@needs_pg
def test_postgresql_value_out_of_range_stays_internal(caplog: pytest.LogCaptureFixture) -> None:
    """A value that slipped past validation is our mistake: INTERNAL with an error id, never
    taken for a failure of the store (asyncpg's DataError is an InterfaceError)."""

    async def overflow(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT CAST(:x AS BIGINT)"), {"x": 2**63})

    err = mapped(failure(PG_URL, overflow), caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "9223372036854775808" not in err.message
    assert caplog.records[-1].levelname == "ERROR" and caplog.records[-1].exc_info


def test_unexpected_exception_is_internal_with_an_error_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    err = mapped(ValueError("secret detail /var/db"), caplog)
    assert (err.grpc_code, err.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "secret" not in err.message
    assert "secret detail" in caplog.text  # the log has the details


def test_domain_errors_pass_through() -> None:
    err = InvalidArgument("INVALID_KEY", "key must not be empty", "key")
    assert from_exception(err) is err


def test_every_tracking_method_goes_through_the_one_edge() -> None:
    service = tpb.DESCRIPTOR.services_by_name["TrackingService"]
    for method in service.methods:
        impl = getattr(TrackingService, method_name(method.name))
        assert unit_of_work(impl) is not None, method.name


def test_the_edge_refuses_a_service_that_lacks_a_method_or_its_unit_of_work() -> None:
    service = tpb.DESCRIPTOR.services_by_name["TrackingService"]

    class Lacking:
        pass

    class Undeclared:
        async def create_experiment(self, request: object, call: object) -> object:
            return request

    with pytest.raises(TypeError, match="lacks create_experiment"):
        method_handlers(Lacking(), service, None, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="declares no unit of work"):
        method_handlers(Undeclared(), service, None, None)  # type: ignore[arg-type]
    Undeclared.create_experiment = writes(Undeclared.create_experiment)  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="lacks get_experiment"):
        method_handlers(Undeclared(), service, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw", ["²", "٣", "1²", "-1", "+1", " 1", "1 ", "1\n", "", "0x1", str(2**31), "9" * 5000]
)
def test_ids_that_cannot_be_experiments_are_not_found(raw: str) -> None:
    with pytest.raises(NotFound) as info:
        validation.parse_experiment_id(raw)
    assert info.value.reason == "EXPERIMENT_NOT_FOUND"
    assert len(info.value.message) < 120


def test_experiment_ids_in_range_parse() -> None:
    assert validation.parse_experiment_id("0") == 0
    assert validation.parse_experiment_id("007") == 7
    assert validation.parse_experiment_id(str(2**31 - 1)) == 2**31 - 1


@pytest.mark.parametrize("ms", [-1, 253_402_300_800_000, 2**63 - 1, -(2**63)])
def test_times_outside_the_calendar_are_invalid(ms: int) -> None:
    with pytest.raises(InvalidArgument) as info:
        validation.check_time(ms, "start_time")
    assert (info.value.reason, info.value.field) == ("INVALID_TIME", "start_time")


def test_times_at_the_calendar_edges_pass() -> None:
    validation.check_time(0, "start_time")
    validation.check_time(253_402_300_799_999, "end_time")


@pytest.mark.parametrize("status", [-5, 6, 99, 2**31 - 1])
def test_statuses_outside_the_enum_are_invalid(status: int) -> None:
    with pytest.raises(InvalidArgument) as info:
        validation.check_run_status(status)
    assert info.value.reason == "INVALID_STATUS"


def test_tag_checks_name_the_field() -> None:
    validation.check_tags([("k", "v" * 65_536)])
    for pairs, reason, field in [
        ([("k", "v"), ("k2", "v" * 65_537)], "VALUE_TOO_LONG", "tags[1].value"),
        ([("", "v")], "INVALID_KEY", "tags[0].key"),
        ([("k", "a\x00")], "INVALID_VALUE", "tags[0].value"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            validation.check_tags(pairs)
        assert (info.value.reason, info.value.field) == (reason, field)


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"o":' * 100_000, b"[]", b"7", b'{"o": 1e400, "f": "x"}']
)
def test_malformed_page_tokens_are_invalid(body: bytes) -> None:
    token = base64.urlsafe_b64encode(body).decode()
    with pytest.raises(InvalidArgument) as info:
        page_tokens.decode(token, "x", ("o",), "SearchRuns", "filter")
    assert info.value.reason == "INVALID_PAGE_TOKEN"


def test_shown_clips_long_values() -> None:
    assert len(shown("r" * 10_000)) <= 80
    assert shown("abc") == "'abc'"


# Issue 12: every problem of a request, in one refusal


def test_one_gathered_problem_is_raised_as_it_is() -> None:
    problems = validation.Problems()
    problems.check(validation.check_key, "k", "key")
    problems.raise_if_any()  # nothing found
    problems.check(validation.check_key, "", "key")
    with pytest.raises(InvalidArgument) as info:
        problems.raise_if_any()
    assert type(info.value) is InvalidArgument
    assert (info.value.reason, info.value.message) == ("INVALID_KEY", "key must not be empty")


def test_several_problems_are_raised_together_first_on_top() -> None:
    problems = validation.Problems()
    problems.check(validation.check_run_name, "n" * 501)
    problems.check(validation.check_time, -1, "start_time")
    validation.check_tags([("", "v"), ("ok", "v"), ("k", "\x00")], problems=problems)
    with pytest.raises(ManyProblems) as info:
        problems.raise_if_any()
    err = info.value
    assert (err.reason, err.field, err.count) == ("INVALID_NAME", "run_name", 4)
    assert [f for f, _ in err.violations()] == ["run_name", "start_time", "tags[0].key",
                                                "tags[2].value"]  # fmt: skip
    assert err.message == (
        "run_name: run name is longer than 500 characters (and 3 more problems: each listed as"
        " a field violation)"
    )


def test_tag_checks_without_a_collector_raise_every_problem() -> None:
    with pytest.raises(ManyProblems) as info:
        validation.check_tags([("", "v" * 65_537), ("k\n", "v")])
    assert [f for f, _ in info.value.violations()] == ["tags[0].key", "tags[0].value",
                                                       "tags[1].key"]  # fmt: skip


def test_a_refusal_of_another_code_ends_the_checks() -> None:
    """NOT_FOUND cannot share a status with INVALID_ARGUMENT: the problems found before it
    are raised instead; found first, it is raised alone."""
    problems = validation.Problems()
    with pytest.raises(NotFound):
        problems.check(validation.check_run_id, "", "run_id")
    problems.check(validation.check_key, "", "key")
    with pytest.raises(InvalidArgument) as info:
        problems.check(validation.check_run_id, "", "run_id")
    assert info.value.reason == "INVALID_KEY"


def test_problems_are_bounded_and_counted() -> None:
    problems = validation.Problems()
    for i in range(250):
        problems.check(validation.check_key, "", f"metrics[{i}].key")
    problems.add_unlisted(50)
    with pytest.raises(ManyProblems) as info:
        problems.raise_if_any()
    err = info.value
    assert (len(err.problems), err.count) == (100, 300)
    assert "(and 299 more problems: 300 in all, the first 100 listed" in err.message
    status = errors.to_status(err)
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert [v.field for v in bad.field_violations] == [f"metrics[{i}].key" for i in range(100)]
    nested = validation.Problems()  # a ManyProblems gathered again keeps its count
    nested.add(err)
    assert (len(nested.kept), nested.count) == (100, 300)


def test_field_violations_stay_within_the_trailers_budget() -> None:
    long_ones = [InvalidArgument("INVALID_KEY", "λ" * 900, f"keys[{i}]") for i in range(100)]
    err = ManyProblems(long_ones, 100)
    listed = err.violations()
    size = sum(len(f.encode()) + len(d.encode()) for f, d in listed)
    assert size <= errors.MAX_VIOLATION_BYTES and 0 < len(listed) < 100
    assert all(len(d) <= errors.MAX_LISTED_DESCRIPTION_CHARS for _, d in listed)
    assert f"100 in all, the first {len(listed)} listed" in err.message


def test_a_block_with_several_bad_series_reports_each() -> None:
    block = ipb.SeriesBlock(
        run_ids=["r"], keys=["a", "", "b\n", ""], lengths=[1, 0, 1, 1], values=[1.0, 2.0],
        steps=[1], run_index=[0, 0, 0, 3],
    )  # fmt: skip
    with pytest.raises(ManyProblems) as info:
        blocks.decode(block, 0)
    assert info.value.reason == "EMPTY_SERIES"
    assert [f for f, _ in info.value.violations()] == [
        "block.lengths[1]", "block.values", "block.steps", "block.keys[1]", "block.keys[2]",
        "block.keys[3]", "block.run_index[3]",
    ]  # fmt: skip


def test_log_batch_metrics_report_each_bad_series() -> None:
    metrics = [
        pb.MetricSeries(key="a", values=[1.0], timestamps=[1, 2]),
        pb.MetricSeries(key="", values=[]),
        pb.MetricSeries(key="", values=[3.0] * 100, steps=[1]),
    ]
    problems = validation.Problems()
    segs = blocks.from_metric_series(metrics, "r", 0, problems)
    assert segs.points == 0
    with pytest.raises(ManyProblems) as info:
        problems.raise_if_any()
    assert [f for f, _ in info.value.violations()] == [
        "metrics[0].timestamps", "metrics[1].key", "metrics[2].steps", "metrics[2].key",
    ]  # fmt: skip


def test_a_valid_log_batch_is_converted_as_before() -> None:
    metrics = [pb.MetricSeries(key=f"k{i}", values=[float(i)] * (1 + i % 70)) for i in range(50)]
    problems = validation.Problems()
    segs = blocks.from_metric_series(metrics, "r", 7, problems)
    problems.raise_if_any()
    assert segs.points == sum(1 + i % 70 for i in range(50))


def test_the_client_gets_every_violation() -> None:
    """Several violations reach the exception in order (``violations``); ``field_violations``
    maps each field to its description, a repeated field's joined."""
    err = ManyProblems(
        [
            InvalidArgument("INVALID_KEY", "key must not be empty", "params[0].key"),
            InvalidArgument("VALUE_TOO_LONG", "too long", "params[0].value"),
            InvalidArgument("INVALID_RUN_INDEX", "outside", "block.run_index"),
            InvalidArgument("INVALID_RUN_INDEX", "outside too", "block.run_index"),
        ],
        4,
    )
    status = errors.grpc_status(err)
    rich = _status.parse(status.trailing_metadata)
    assert rich.violations == [
        ("params[0].key", "key must not be empty"),
        ("params[0].value", "too long"),
        ("block.run_index", "outside"),
        ("block.run_index", "outside too"),
    ]
    assert rich.field_violations == {
        "params[0].key": "key must not be empty",
        "params[0].value": "too long",
        "block.run_index": "outside; outside too",
    }
    got = from_rpc_error(FailedCall(status.code, status.details, status.trailing_metadata))
    assert isinstance(got, ClientInvalidArgument) and got.reason == "INVALID_KEY"
    assert got.violations == rich.violations and got.field_violations == rich.field_violations
    assert got.message == err.message
    plain = ClientInvalidArgument("m", grpc.StatusCode.INVALID_ARGUMENT, "R", {"f": "d"})
    assert plain.violations == [("f", "d")]  # made by hand, as before: the list follows
