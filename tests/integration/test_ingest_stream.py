"""IngestService.StreamMetrics on a real server: acks after commit, exactly-once across
reconnects and restarts, per-batch rejections, backpressure and graceful shutdown."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from trackline import ResourceExhausted, TracklineClient
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc

from tests.support.points import block
from tests.support.ports import free_port
from tests.support.servers import ServerProcess, start_server
from tests.support.streams import KEY, Stream


def history(client: TracklineClient, run_id: str, key: str) -> list[int]:
    return [step for step, _, _ in client.get_metric_history(run_id, key)]


def test_acks_follow_commit_and_points_are_readable(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-basic")
    assert s.handshake.acked_seq == 0
    s.batch(1, run.run_id, "loss", [0, 1, 2])
    s.batch(2, run.run_id, "loss", [3, 4])
    acks = s.until(2)
    assert acks[-1].acked_seq == 2 and not any(a.rejections for a in acks)
    assert history(client, run.run_id, "loss") == [0, 1, 2, 3, 4]
    latest = {m.key: m for m in client.get_run(run.run_id).latest_metrics}
    assert latest["loss"].step == 4 and latest["loss"].value == 4.0
    s.close()


def test_resent_batches_are_applied_once(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    first = Stream(server.address, "w-resend")
    for seq in (1, 2, 3):
        first.batch(seq, run.run_id, "x", [seq])
    first.until(3)
    first.close()
    # A reconnecting writer learns its high-water mark and may resend anything.
    second = Stream(server.address, "w-resend")
    assert second.handshake.acked_seq == 3
    for seq in (2, 3, 4):
        second.batch(seq, run.run_id, "x", [seq])
    assert second.until(4)[-1].acked_seq == 4
    assert history(client, run.run_id, "x") == [1, 2, 3, 4]
    second.close()


def test_bad_batches_are_rejected_alone(server: ServerProcess, client: TracklineClient) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-bad")
    s.batch(1, "no-such-run", "x", [1])
    s.send(ipb.StreamMetricsRequest(seq=2, block=block((run.run_id, "x", 0, [1, 2], [], [1]))))
    s.batch(3, run.run_id, "", [1])
    s.batch(4, run.run_id, "x", [7])
    acks = s.until(4)
    reasons = {r.seq: r.reason for a in acks for r in a.rejections}
    assert reasons == {1: "RUN_NOT_FOUND", 2: "COLUMN_LENGTH_MISMATCH", 3: "INVALID_KEY"}
    assert history(client, run.run_id, "x") == [7]
    client.delete_run(run.run_id)
    s.batch(5, run.run_id, "x", [8])
    (rejection,) = [r for a in s.until(5) for r in a.rejections]
    assert rejection.seq == 5 and rejection.reason == "RUN_DELETED"
    s.close()


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ([ipb.StreamMetricsRequest(seq=0)], "INVALID_WRITER_ID"),
        ([ipb.StreamMetricsRequest(writer_id="w" * 129)], "INVALID_WRITER_ID"),
        (
            [
                ipb.StreamMetricsRequest(writer_id="w", writer_key=KEY, seq=2),
                ipb.StreamMetricsRequest(seq=2),
            ],
            "INVALID_SEQ",
        ),
        (
            [
                ipb.StreamMetricsRequest(writer_id="w", writer_key=KEY),
                ipb.StreamMetricsRequest(writer_id="v"),
            ],
            "WRITER_ID_CHANGED",
        ),
    ],
)
def test_malformed_streams_end_with_invalid_argument(
    server: ServerProcess, messages: list[ipb.StreamMetricsRequest], reason: str
) -> None:
    from trackline._exceptions import from_rpc_error

    with grpc.insecure_channel(server.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            for _ in stub.StreamMetrics(iter(messages), timeout=30):
                pass
    typed = from_rpc_error(err.value)
    assert typed.code == grpc.StatusCode.INVALID_ARGUMENT and typed.reason == reason


@pytest.fixture
def slow_flush(tmp_path: Path) -> ServerProcess:
    """A server whose flushes linger 1.5 s and whose queue holds 100 points."""
    srv = start_server(
        tmp_path,
        extra_args=["--ingest-linger-ms", "1500", "--ingest-max-points", "100"],
    )
    return srv


def test_full_queue_refuses_unary_and_holds_streams(slow_flush: ServerProcess) -> None:
    client = TracklineClient(slow_flush.address, retry_seconds=5)
    run = client.create_run()
    s = Stream(slow_flush.address, "w-full")
    s.batch(1, run.run_id, "x", list(range(100)))  # fills the queue for the linger time
    s.batch(2, run.run_id, "x", list(range(100, 150)))  # waits for room: not read yet
    time.sleep(0.3)  # both batches reach the server well within the 1.5 s linger
    # A client that may not wait (retry_seconds=0) gets the refusal; one that may would wait
    # out its RetryInfo delay and retry.
    impatient = TracklineClient(slow_flush.address, retry_seconds=0)
    with pytest.raises(ResourceExhausted) as err:
        impatient.log_metric(run.run_id, "y", 1.0)
    assert err.value.reason == "INGEST_QUEUE_FULL"
    assert err.value.retry_delay is not None and err.value.retry_delay > 0
    impatient.close()
    assert s.until(2)[-1].acked_seq == 2  # the held batch goes through once there is room
    assert history(client, run.run_id, "x") == list(range(150))
    s.close()
    client.close()


def test_sigterm_commits_and_acks_what_was_queued(tmp_path: Path) -> None:
    port = free_port()
    args = ["--port", str(port), "--ingest-linger-ms", "1000"]
    srv = start_server(tmp_path, extra_args=args)
    client = TracklineClient(srv.address, retry_seconds=10)
    run = client.create_run()
    s = Stream(srv.address, "w-term")
    s.batch(1, run.run_id, "x", [1, 2, 3])
    time.sleep(0.3)  # the batch reaches the server and lingers there for a second
    srv.proc.send_signal(signal.SIGTERM)
    acked = 0
    with pytest.raises(grpc.RpcError) as err:
        for resp in s.responses:
            acked = max(acked, resp.acked_seq)
    assert acked == 1
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert srv.proc.wait(30) == 0
    s.close()
    again = start_server(tmp_path, extra_args=["--port", str(port)])
    assert again.address == srv.address
    assert history(client, run.run_id, "x") == [1, 2, 3]
    client.close()


def test_unary_log_batch_joins_the_group_commit(
    server: ServerProcess, client: TracklineClient
) -> None:
    """LogBatch and streams commit together; a failing LogBatch leaves the others intact."""
    import threading

    run = client.create_run()
    client.log_param(run.run_id, "p", "1")
    errors: list[Exception] = []

    def unary(i: int) -> None:
        try:
            if i == 3:
                client.log_batch(run.run_id, params={"p": "2"})  # conflicts: must fail alone
            else:
                client.log_metric(run.run_id, f"u{i}", float(i), step=i)
        except Exception as err:
            errors.append(err)

    s = Stream(server.address, "w-mixed")
    s.batch(1, run.run_id, "s", [1, 2])
    threads = [threading.Thread(target=unary, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.until(1)
    assert [type(e).__name__ for e in errors] == ["InvalidArgument"]
    got = client.get_run(run.run_id)
    assert {m.key for m in got.latest_metrics} == {"s", "u0", "u1", "u2", "u4", "u5"}
    assert {p.key: p.value for p in got.params} == {"p": "1"}
    assert history(client, run.run_id, "s") == [1, 2]
    s.close()


def test_metric_values_round_trip_through_stream(
    server: ServerProcess, client: TracklineClient
) -> None:
    import math

    run = client.create_run()
    s = Stream(server.address, "w-values")
    values = [math.nan, math.inf, -math.inf, -0.0, 1e-308, 1.7976931348623157e308]
    series = (run.run_id, "v", 0, list(range(len(values))), [5] * len(values), values)
    s.send(ipb.StreamMetricsRequest(seq=1, block=block(series)))
    s.until(1)
    got = [v for _, _, v in client.get_metric_history(run.run_id, "v")]
    assert math.isnan(got[0]) and got[1:] == values[1:]
    assert math.copysign(1, got[3]) == -1.0
    latest = client.get_run(run.run_id).latest_metrics[0]
    assert latest.value == values[-1]
    s.close()


def test_stream_needs_token_when_auth_is_on(tmp_path: Path) -> None:
    srv = start_server(tmp_path, extra_args=["--auth-token", "t0k"])
    with pytest.raises(grpc.RpcError) as err:
        Stream(srv.address, "w-auth")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_long_series_are_split_into_chunks(server: ServerProcess, client: TracklineClient) -> None:
    """A 600,000-point series (stream) and a 300,000-point one (LogBatch) are stored as several
    chunks and page back whole, in order."""
    from trackline.v1 import resources_pb2 as pb

    run = client.create_run()
    s = Stream(server.address, "w-long")
    s.batch(1, run.run_id, "long", list(range(600_000)))
    s.until(1)
    s.close()
    n = 300_000
    client.log_batch(
        run.run_id,
        metrics=[
            pb.MetricSeries(key="unary", steps=range(n), timestamps=[1] * n, values=[2.0] * n)
        ],
    )
    assert [
        st for st, _, _ in client.get_metric_history(run.run_id, "long", page_size=100_000)
    ] == (list(range(600_000)))
    assert sum(1 for _ in client.get_metric_history(run.run_id, "unary", page_size=70_000)) == n


def test_unread_rejections_come_back_in_the_next_handshake(
    server: ServerProcess, client: TracklineClient
) -> None:
    run = client.create_run()
    s = Stream(server.address, "w-unread")
    s.batch(1, "no-such-run", "x", [1])  # refused at flush
    s.batch(2, run.run_id, "bad\nkey", [1])  # refused on arrival
    s.batch(3, run.run_id, "x", [5])
    s.until(3)  # all settled; the test drops what the responses said
    s.close()
    again = Stream(server.address, "w-unread")
    assert again.handshake.acked_seq == 3
    assert [(r.seq, r.reason) for r in again.handshake.rejections] == [
        (1, "RUN_NOT_FOUND"),
        (2, "INVALID_KEY"),
    ]
    again.close()
    assert history(client, run.run_id, "x") == [5]
