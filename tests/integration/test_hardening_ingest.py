"""Issue 9 on the stream path: writers are fenced (a writer id belongs to its key and token,
one stream holds it at a time), seqs the writer cannot have sent are refused at the stream,
a flush commits the honest (bad batches are refused on arrival or isolated), and a batch of
many series costs linear time while health keeps answering."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import insert, text
from trackline import TracklineClient
from trackline._exceptions import from_rpc_error
from trackline._sender import MetricSender
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc
from trackline_server.database import Database
from trackline_server.errors import Unavailable
from trackline_server.metrics import segments
from trackline_server.metrics.writer import Job, StreamBatch
from trackline_server.models import experiments, runs

from tests.support.databases import fresh_postgres_database
from tests.support.points import block
from tests.support.servers import ServerProcess, start_server
from tests.support.streams import Stream
from tests.support.writers import writer_with_a_run


def refusal(address: str, messages: list[ipb.StreamMetricsRequest]) -> tuple[str, str, str]:
    """The (code, reason, message) a stream of ``messages`` ends with."""
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            for _ in stub.StreamMetrics(iter(messages), timeout=60):
                pass
    typed = from_rpc_error(err.value)
    return typed.code.name, typed.reason, typed.message


def steps_of(client: TracklineClient, run_id: str, key: str = "x") -> list[int]:
    return sorted(step for step, _, _ in client.get_metric_history(run_id, key))


def test_a_writer_id_without_its_key_is_refused_and_the_victim_keeps_every_point(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    victim = Stream(server.address, "victim", os.urandom(32))
    for seq in (1, 2, 3):
        victim.batch(seq, run.run_id, "x", [seq])
    victim.until(3)
    # The hijack of issue 9: the victim's id, a jump far ahead, without the victim's key.
    hijack = [
        ipb.StreamMetricsRequest(writer_id="victim", writer_key=os.urandom(32)),
        ipb.StreamMetricsRequest(seq=10**12),
    ]
    code, reason, message = refusal(server.address, hijack)
    assert (code, reason) == ("FAILED_PRECONDITION", "WRITER_ID_TAKEN")
    assert "choose a new random writer id" in message
    for seq in (4, 5, 6):
        victim.batch(seq, run.run_id, "x", [seq])
    assert victim.until(6)[-1].acked_seq == 6
    assert steps_of(client, run.run_id) == [1, 2, 3, 4, 5, 6]
    victim.close()


def test_a_newer_stream_of_a_writer_fences_the_older_and_nothing_acked_is_lost(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    key = os.urandom(32)
    old = Stream(server.address, "shared", key)
    for seq in (1, 2):
        old.batch(seq, run.run_id, "x", [seq])
    old.until(2)
    new = Stream(server.address, "shared", key)
    assert new.handshake.acked_seq == 2
    with pytest.raises(grpc.RpcError) as err:
        old.until(3)  # the older stream ends at once
    typed = from_rpc_error(err.value)
    assert (typed.code.name, typed.reason) == ("ABORTED", "WRITER_FENCED")
    for seq in (3, 4):
        new.batch(seq, run.run_id, "x", [seq])
    assert new.until(4)[-1].acked_seq == 4
    assert steps_of(client, run.run_id) == [1, 2, 3, 4]
    old.close()
    new.close()


def test_a_writer_id_belongs_to_the_token_that_created_it(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra_args=["--auth-token", "alice", "--auth-token", "bob"])
    try:
        key = os.urandom(32)
        first = Stream(srv.address, "w-owned", key, token="alice")
        first.close()
        hello = ipb.StreamMetricsRequest(writer_id="w-owned", writer_key=key)
        with grpc.insecure_channel(srv.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                for _ in stub.StreamMetrics(
                    iter([hello]), timeout=30, metadata=[("authorization", "Bearer bob")]
                ):
                    pass
        typed = from_rpc_error(err.value)
        assert (typed.code.name, typed.reason) == ("PERMISSION_DENIED", "WRITER_NOT_OWNED")
        again = Stream(srv.address, "w-owned", key, token="alice")  # its owner still can
        again.close()
    finally:
        srv.stop()


def test_bad_seqs_are_refused_at_the_stream_while_an_honest_writer_goes_on(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    honest = Stream(server.address, "honest", os.urandom(32))
    block = ipb.SeriesBlock(run_ids=[run.run_id], keys=["y"], lengths=[1], values=[1.0])
    bad_streams = {
        "2**63": [ipb.StreamMetricsRequest(seq=2**63, block=block)],
        "2**64-1": [ipb.StreamMetricsRequest(seq=2**64 - 1)],
        "jump": [ipb.StreamMetricsRequest(seq=1), ipb.StreamMetricsRequest(seq=5, block=block)],
        "first jump": [ipb.StreamMetricsRequest(seq=3, block=block)],
    }
    found: list[tuple[str, str, str]] = []

    def attack() -> None:
        for i in range(5):
            for name, messages in bad_streams.items():
                hello = ipb.StreamMetricsRequest(writer_id=f"bad-{name}-{i}",
                                                 writer_key=os.urandom(32))  # fmt: skip
                merged = ipb.StreamMetricsRequest()
                merged.CopyFrom(hello)
                merged.MergeFrom(messages[0])  # the handshake may carry the first batch
                found.append((name, *refusal(server.address, [merged, *messages[1:]])[:2]))

    attacker = threading.Thread(target=attack)
    attacker.start()
    seq = 0
    while attacker.is_alive() or seq < 20:
        seq += 1
        honest.batch(seq, run.run_id, "x", [seq])
        honest.until(seq)
    attacker.join()
    assert {(code, reason) for _, code, reason in found} == {("INVALID_ARGUMENT", "INVALID_SEQ")}
    assert len(found) == 5 * len(bad_streams)
    assert steps_of(client, run.run_id) == list(range(1, seq + 1))
    assert list(client.get_metric_history(run.run_id, "y")) == []  # no bad batch was stored
    honest.close()


@pytest.mark.parametrize(
    "body",
    [
        {"block": ipb.SeriesBlock(run_ids=["r"], keys=["k"], lengths=[1], values=[1.0])},
        {"block": block(("r", "k", 0, [], [], [1.0]))},
    ],
    ids=["block", "one-series block"],
)
def test_points_without_a_seq_are_refused(server: ServerProcess, body: dict[str, object]) -> None:
    messages = [
        ipb.StreamMetricsRequest(writer_id="w-zero", writer_key=os.urandom(32)),
        ipb.StreamMetricsRequest(seq=0, **body),  # type: ignore[arg-type]
    ]
    assert refusal(server.address, messages)[:2] == ("INVALID_ARGUMENT", "INVALID_SEQ")


def test_run_ids_no_run_can_have_are_refused_alone(
    server: ServerProcess, client: TracklineClient
) -> None:
    """A NUL (PostgreSQL cannot compare such a text) and 40,000 distinct run ids in one batch
    (above asyncpg's 32,767 parameters) used to fail every batch of their flush."""
    run = client.create_run()
    honest = Stream(server.address, "honest", os.urandom(32))
    bad = Stream(server.address, "careless", os.urandom(32))
    bad.batch(1, f"{run.run_id}\x00", "x", [1])
    many = ipb.SeriesBlock(run_ids=[uuid.uuid4().hex for _ in range(40_000)], keys=["x"] * 40_000,
                           lengths=[1] * 40_000, values=[1.0] * 40_000)  # fmt: skip
    bad.send(ipb.StreamMetricsRequest(seq=2, block=many))
    for seq in (1, 2, 3):
        honest.batch(seq, run.run_id, "x", [seq])
    bad.batch(3, run.run_id, "z", [7])
    reasons = {r.seq: r.reason for a in bad.until(3) for r in a.rejections}
    assert reasons == {1: "RUN_NOT_FOUND", 2: "RUN_NOT_FOUND"}
    assert not any(a.rejections for a in honest.until(3))
    assert steps_of(client, run.run_id) == [1, 2, 3]
    assert steps_of(client, run.run_id, "z") == [7]
    honest.close()
    bad.close()


def test_streams_cancelled_in_their_handshake_leave_the_store_writable(
    server: ServerProcess, client: TracklineClient
) -> None:
    """A client that goes away during the handshake's write transaction (a deadline, a fork
    ending its stream) cancels the handler's task. Cut short inside a SQLite statement, that
    transaction left its connection holding the write lock, and every later write failed
    with STORE_BUSY after the 30 s busy timeout; cancelled at every point of the handshake
    here, it commits or rolls back whole and the next writes go through."""
    run = client.create_run()
    with grpc.insecure_channel(server.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for i in range(200):
            hello = ipb.StreamMetricsRequest(writer_id=f"c{i % 5}", writer_key=b"k" * 32)
            call = stub.StreamMetrics(iter([hello]), timeout=5)
            time.sleep(0.0005 * (i % 7))
            call.cancel()
    quick = TracklineClient(server.address, retry_seconds=0)
    try:
        for step in range(20):
            quick.log_metric(run.run_id, "after", 1.0, step=step)
        quick.update_run(run.run_id, status=3)  # RUN_STATUS_FINISHED
    finally:
        quick.close()
    assert len(steps_of(client, run.run_id, "after")) == 20


def test_a_stream_batch_into_a_deleted_experiment_is_rejected(
    server: ServerProcess, client: TracklineClient
) -> None:
    exp = client.create_experiment(f"doomed-{uuid.uuid4().hex[:8]}").experiment_id
    run = client.create_run(exp)
    client.delete_experiment(exp)
    s = Stream(server.address, "w-deleted", os.urandom(32))
    s.batch(1, run.run_id, "x", [1])
    (rejection,) = [r for a in s.until(1) for r in a.rejections]
    assert (rejection.seq, rejection.reason) == (1, "EXPERIMENT_DELETED")
    assert list(client.get_metric_history(run.run_id, "x")) == []
    s.close()


async def _add_runs(url: str, n: int) -> list[str]:
    """Creates the schema and ``n`` runs straight in the database (40,000 CreateRun calls
    would take minutes)."""
    db = Database(url)
    await db.create_schema()
    ids = [uuid.uuid4().hex for _ in range(n)]
    async with db.write() as conn:
        await conn.execute(insert(experiments).values(
            experiment_id=1, name="many", artifact_location="/a", lifecycle_stage=1,
            creation_time=0, last_update_time=0,
        ))  # fmt: skip
        for i in range(0, n, 5_000):
            await conn.execute(insert(runs), [
                {"run_id": r, "experiment_id": 1, "run_name": "r", "status": 1, "start_time": 0,
                 "end_time": None, "lifecycle_stage": 1, "parent_run_id": None,
                 "artifact_uri": ""}
                for r in ids[i : i + 5_000]
            ])  # fmt: skip
    await db.close()
    return ids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_batch_of_40k_runs_is_stored_while_health_answers(backend: str, tmp_path: Path) -> None:
    """Finding 4: a batch of N one-point series naming N distinct runs cost O(N^2) on the
    event loop (40k: 9 s on SQLite, with health checks waiting 8 s; a failed flush on
    PostgreSQL). Health must answer within 100 ms meanwhile (checked here with a loose 1 s)."""
    n = 40_000
    url = fresh_postgres_database() if backend == "postgresql" else None
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'trackline.db'}"
    ids = asyncio.run(_add_runs(url, n))
    srv = start_server(tmp_path, url)
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with grpc.insecure_channel(srv.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while not done.is_set():
                start = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest(), timeout=60)
                latencies.append(time.perf_counter() - start)
                time.sleep(0.01)

    try:
        s = Stream(srv.address, "w-many", os.urandom(32))
        poller = threading.Thread(target=poll)
        poller.start()
        one_each = block(*((r, "loss", 0, [1], [], [0.5]) for r in ids))
        s.send(ipb.StreamMetricsRequest(seq=1, block=one_each))
        acks = s.until(1)
        done.set()
        poller.join()
        assert not any(a.rejections for a in acks)
        assert latencies and max(latencies) < 1.0, f"health took up to {max(latencies):.2f} s"
        client = TracklineClient(srv.address)
        for run_id in (ids[0], ids[n // 2], ids[-1]):
            assert [(s, v) for s, _, v in client.get_metric_history(run_id, "loss")] == [(1, 0.5)]
        client.close()
        s.close()
    finally:
        done.set()
        srv.stop()


def one_point(run_id: str, step: int, key: str = "loss") -> segments.Segments:
    one = np.ones(1, np.int64)
    return segments.numbered([run_id], [key], [0], one, one * step, one, np.full(1, 0.5))


def test_a_flush_that_fails_fails_only_the_items_that_broke_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses one batch's points (a trigger); its flush partners commit, and its
    error names an error id found in the log, not the database's text."""

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'trackline.db'}")
        await db.create_schema()
        writer, run_id = await writer_with_a_run(db)
        try:
            async with db.write() as conn:
                await conn.execute(text(
                    "CREATE TRIGGER poison BEFORE INSERT ON latest_metrics WHEN NEW.key = 'bad'"
                    " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                ))  # fmt: skip

            async def job_fn(conn: object) -> bool:
                return True

            good = [StreamBatch(f"w{i}", 1, one_point(run_id, i)) for i in range(6)]
            bad = StreamBatch("poisoned", 1, one_point(run_id, 9, key="bad"))
            later = StreamBatch("poisoned", 2, one_point(run_id, 10))
            job = Job(run_id, job_fn, segments.empty())
            for batch in (*good[:3], bad, later, *good[3:]):
                await writer.put_batch(batch)  # all in one flush: none waits for room
            writer.put_job(job)
            await asyncio.wait([b.done for b in (*good, bad, later)] + [job.done])
            assert [b.done.result() for b in good] == [None] * 6
            assert job.done.result() is True
            error = bad.done.exception()
            assert isinstance(error, Unavailable) and error.reason == "WRITE_FAILED"
            assert "error id" in error.message
            assert "injected" not in error.message and "poisoned" not in error.message
            error_id = error.message.split("error id ")[1].split(";")[0]
            assert any(error_id in r.getMessage() for r in caplog.records)
            # The later batch of the failed writer does not commit past the failed one.
            assert isinstance(later.done.exception(), Unavailable)
            assert (await writer.high_water("poisoned"))[0] == 0
            assert [(await writer.high_water(f"w{i}"))[0] for i in range(6)] == [1] * 6
        finally:
            await writer.close()
            await db.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())


def test_failures_nobody_waits_for_log_no_unretrieved_futures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream that went away leaves its batches' futures unawaited; when their flush fails,
    asyncio must not log "Future exception was never retrieved" for each."""

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'trackline.db'}")
        await db.create_schema()
        writer, run_id = await writer_with_a_run(db)
        try:
            async with db.write() as conn:
                await conn.execute(text(
                    "CREATE TRIGGER fail BEFORE INSERT ON latest_metrics"
                    " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                ))  # fmt: skip
            batches = [StreamBatch(f"gone{i}", 1, one_point(run_id, i)) for i in range(3)]
            for batch in batches:
                await writer.put_batch(batch)
            while not all(b.done.done() for b in batches):
                await asyncio.sleep(0.01)
            del batches, batch
        finally:
            await writer.close()
            await db.close()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        import gc

        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_two_senders_sharing_a_writer_id_both_store_every_point(
    server: ServerProcess, client: TracklineClient
) -> None:
    """Two senders that chose the same writer id (forced here): the second's handshake is
    refused, it goes on under a new id and key, and both store every point once."""
    runs_ = [client.create_run(), client.create_run()]
    senders = [MetricSender(server.address), MetricSender(server.address)]
    senders[1].writer_id = senders[0].writer_id
    try:
        for step in range(300):
            for sender, run in zip(senders, runs_, strict=True):
                sender.log(run.run_id, "x", float(step), step=step)
            if step % 100 == 0:
                time.sleep(0.06)  # several batches each
        for sender in senders:
            sender.flush(timeout=60)
        assert senders[0].writer_id != senders[1].writer_id
        for run in runs_:
            assert steps_of(client, run.run_id) == list(range(300))
    finally:
        for sender in senders:
            sender.close()
