"""The server's life cycle under bad infrastructure and careless operators (issue 9, findings
2, 5, 7, 9 and 11): the store watched, the port bound exclusively, start-up failures in one
line, a budget for request bytes in flight, malformed requests answered as such."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from trackline import TracklineClient, Unavailable
from trackline.v1 import ingest_pb2 as ipb
from trackline.v1 import ingest_pb2_grpc
from trackline.v1 import resources_pb2 as pb
from trackline.v1 import tracking_pb2 as tpb

from tests.support.databases import PG_URL, fresh_postgres_database, on_test_postgres
from tests.support.points import block
from tests.support.servers import ServerProcess, start_server
from tests.support.waiting import eventually

SERVICES = ("", "trackline.v1.TrackingService", "trackline.v1.IngestService")


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


def _db_path(srv: ServerProcess) -> Path:
    return Path(srv.store_uri.split(":///", 1)[1])


def _health(address: str) -> list[int]:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return [
            stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=5).status for s in SERVICES
        ]


def _status(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, float | None]:
    """The code, ErrorInfo reason and RetryInfo delay (seconds) of a failed call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    reason, retry = "", None
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = error_details_pb2.RetryInfo()
            detail.Unpack(delay)
            retry = delay.retry_delay.ToTimedelta().total_seconds()
    return err.code(), reason, retry  # type: ignore[attr-defined]


def _stream_one_batch(address: str, run_id: str, writer_id: str) -> list[int]:
    """Streams one batch of one point; the acked seqs the server answered."""
    request = ipb.StreamMetricsRequest(
        writer_id=writer_id,
        writer_key=os.urandom(32),
        seq=1,
        block=block((run_id, "m", 0, [0], [1], [1.0])),
    )
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        return [r.acked_seq for r in stub.StreamMetrics(iter([request]), timeout=30)]


def _chattr(flag: str, path: Path) -> None:
    """chattr +i/-i; the test is skipped where the file system has no immutable flag."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed: no way to make a file read-only for root")
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr {flag} does not work here: {done.stderr.strip()}")


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """Makes files immutable (read-only even for root) and undoes it at the end."""
    made: list[Path] = []

    def make(path: Path) -> None:
        _chattr("+i", path)
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_deleted_sqlite_file_refuses_every_write_and_goes_not_serving(
    sqlite_server: ServerProcess,
) -> None:
    address = sqlite_server.address
    client = TracklineClient(address, retry_seconds=0)
    exp = client.create_experiment("kept")
    run = client.create_run(exp.experiment_id)
    client.log_batch(run.run_id, params={"before": "1"})
    assert _stream_one_batch(address, run.run_id, "w-before")[-1] == 1
    assert _health(address) == [health_pb2.HealthCheckResponse.SERVING] * 3

    db = _db_path(sqlite_server)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink()

    # The first write after the deletion already fails: it committed to the deleted file.
    with pytest.raises(Unavailable) as err:
        client.create_run(exp.experiment_id)
    assert err.value.reason == "STORE_LOST"
    assert "restart" in err.value.message
    assert str(db) not in err.value.message
    with pytest.raises(Unavailable) as err:
        client.log_batch(run.run_id, params={"after": "1"})
    assert err.value.reason == "STORE_LOST"
    with pytest.raises(grpc.RpcError) as rpc:
        _stream_one_batch(address, run.run_id, "w-after")
    assert _status(rpc.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "STORE_LOST")

    not_serving = [health_pb2.HealthCheckResponse.NOT_SERVING] * 3
    assert eventually(lambda: _health(address) == not_serving)
    # It stays so: a deleted file does not come back.
    time.sleep(1.5)
    assert _health(address) == not_serving
    # Reads go on from the file the server still holds open, and nothing makes a new one.
    assert client.get_run(run.run_id).run_id == run.run_id
    assert run.run_id in [r.run_id for r in client.search_runs([exp.experiment_id])]
    assert not db.exists()
    client.close()


def test_read_only_sqlite_file_at_start_is_refused(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    srv = start_server(tmp_path)
    srv.stop()
    db = tmp_path / "trackline.db"
    immutable(db)
    line = _refused(tmp_path, ["--store-uri", f"sqlite:///{db}"])
    assert "read-only" in line


def test_sqlite_file_made_read_only_while_running_refuses_writes_until_fixed(
    sqlite_server: ServerProcess, immutable: Callable[[Path], None]
) -> None:
    address = sqlite_server.address
    client = TracklineClient(address, retry_seconds=0)
    exp = client.create_experiment("e")
    immutable(_db_path(sqlite_server))
    not_serving = [health_pb2.HealthCheckResponse.NOT_SERVING] * 3
    assert eventually(lambda: _health(address) == not_serving)
    with pytest.raises(Unavailable) as err:
        client.create_run(exp.experiment_id)
    assert err.value.reason == "STORE_READ_ONLY"
    assert "writable" in err.value.message
    assert client.get_experiment(exp.experiment_id).name == "e"

    subprocess.run(["chattr", "-i", str(_db_path(sqlite_server))], check=True)
    serving = [health_pb2.HealthCheckResponse.SERVING] * 3
    assert eventually(lambda: _health(address) == serving)
    assert client.create_run(exp.experiment_id).experiment_id == exp.experiment_id
    client.close()


def test_read_only_postgres_at_start_is_refused(tmp_path: Path) -> None:
    url = fresh_postgres_database()
    name = url.rsplit("/", 1)[1]
    on_test_postgres(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    line = _refused(tmp_path, ["--store-uri", url])
    assert "reads only" in line


def _refused(tmp: Path, args: list[str], env: dict[str, str] | None = None) -> str:
    """Starts a server that must refuse to start; its one line on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "trackline_server", "--port", "0",
         "--artifact-root", str(tmp / "artifacts"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("trackline: ")
    assert "Traceback" not in done.stderr
    return lines[0]


def test_second_server_on_a_port_in_use_is_refused(
    sqlite_server: ServerProcess, tmp_path: Path
) -> None:
    host, port = sqlite_server.address.rsplit(":", 1)
    done = subprocess.run(
        [sys.executable, "-m", "trackline_server", "--host", host, "--port", port,
         "--store-uri", f"sqlite:///{tmp_path / 'other.db'}",
         "--artifact-root", str(tmp_path / "other")],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"trackline: port {port} on {host} is already in use"]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "99999"], {}, "--port"),
        (["--port", "-1"], {}, "--port"),
        (["--store-uri", "mysql://user:hunter2@db/x"], {}, "postgresql://"),
        (["--store-uri", "sqlite:///no/such/directory/x.db"], {}, "does not exist"),
        (["--store-uri", "sqlite://"], {}, "in-memory"),
        (["--store-uri", "postgresql://u:hunter2@127.0.0.1:1/x"], {}, "cannot connect"),
        ([], {"TRACKLINE_AUTH_TOKENS": " , "}, "TRACKLINE_AUTH_TOKENS"),
        ([], {"TRACKLINE_AUTH_TOKENS": ""}, "TRACKLINE_AUTH_TOKENS"),
        (["--auth-token", " "], {}, "--auth-token"),
        (["--max-inflight-bytes", "0"], {}, "--max-inflight-bytes"),
        ([], {"TRACKLINE_EVENT_LOOP": "trio"}, "TRACKLINE_EVENT_LOOP"),
        (["--registry-event-retention-days", "0"], {}, "--registry-event-retention-days"),
        ([], {"TRACKLINE_REGISTRY_EVENT_RETENTION_DAYS": "a week"}, "above 0"),
    ],
)
def test_bad_setting_is_refused_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    if not any(a.startswith("--store-uri") for a in args):
        args = [*args, "--store-uri", f"sqlite:///{tmp_path / 't.db'}"]
    line = _refused(tmp_path, args, env)
    assert expected in line
    assert "hunter2" not in line


def test_missing_postgres_database_is_refused_in_one_line(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("TRACKLINE_TEST_PG_URL is not set (.ci/run sets it up)")
    missing = PG_URL.rsplit("/", 1)[0] + f"/t_missing_{uuid.uuid4().hex[:8]}"
    line = _refused(tmp_path, ["--store-uri", missing.replace("postgresql+asyncpg", "postgres")])
    assert "does not exist" in line
    assert ":trackline@" not in line  # no password


@pytest.mark.parametrize("form", ["sqlite:///", "plain path", "postgresql://", "postgres://"])
def test_mlflow_style_store_uri_serves(tmp_path: Path, form: str) -> None:
    if form.startswith("postgres"):
        uri = fresh_postgres_database().replace("postgresql+asyncpg://", form)
    elif form == "plain path":
        uri = str(tmp_path / "plain.db")
    else:
        uri = f"{form}{tmp_path / 'mlflow.db'}"
    srv = start_server(tmp_path, uri)
    try:
        client = TracklineClient(srv.address, retry_seconds=5)
        exp = client.create_experiment("mlflow-style")
        assert client.get_experiment(exp.experiment_id).name == "mlflow-style"
        client.close()
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("args", "loop"), [([], "uvloop"), (["--event-loop", "asyncio"], "asyncio")]
)
def test_server_runs_on_the_event_loop_it_is_given(
    tmp_path: Path, args: list[str], loop: str
) -> None:
    srv = start_server(tmp_path, extra_args=args)
    try:
        assert srv.banner.endswith(f"; event loop {loop}")
        client = TracklineClient(srv.address)
        run = client.create_run(run_name="on-" + loop)
        client.log_metric(run.run_id, "m", 1.0)
        assert [p.value for p in client.get_metric_history(run.run_id, "m")] == [1.0]
        client.close()
    finally:
        srv.stop()


class WriteLock:
    """Another process's hold on the write lock of a server's SQLite file: while it holds it,
    every write of the server waits in flight."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        self.held = False

    def hold(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
            self.held = False


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, WriteLock]]:
    """A server with a small in-flight budget, a run in it, and a lock on its writes."""
    srv = start_server(tmp_path, extra_args=["--max-inflight-bytes", "1500000"])
    client = TracklineClient(srv.address, retry_seconds=5)
    exp = client.create_experiment("e")
    run_id = client.create_run(exp.experiment_id).run_id
    client.close()
    lock = WriteLock(_db_path(srv))
    yield srv, run_id, lock
    lock.release()
    lock.conn.close()
    srv.stop()


def test_inflight_budget_refuses_a_concurrent_huge_call_not_a_small_one(
    locked: tuple[ServerProcess, str, WriteLock],
) -> None:
    srv, run_id, lock = locked
    client = TracklineClient(srv.address, retry_seconds=5)
    huge = tpb.LogBatchRequest(
        run_id=run_id, tags=[pb.Tag(key=f"t{i}", value="x" * 120) for i in range(9000)]
    )
    assert huge.ByteSize() > 1_000_000
    lock.hold()
    admitted: list[grpc.Future] = []
    refused: grpc.RpcError | None = None
    for _ in range(20):  # until one arrives while an earlier one is in flight
        call = client.stub.LogBatch.future(huge, timeout=60)
        time.sleep(0.3)
        if call.done() and call.exception() is not None:
            refused = call.exception()
            break
        admitted.append(call)
    assert refused is not None, "no huge call was refused while another was in flight"
    code, reason, retry = _status(refused)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SERVER_BUSY")
    assert retry is not None and retry > 0
    # A small call goes through beside the huge one in flight.
    assert client.get_run(run_id).run_id == run_id
    assert admitted and not any(c.done() for c in admitted)
    lock.release()
    for call in admitted:
        call.result(timeout=60)
    assert len(client.get_run(run_id).tags) >= 9000
    client.close()


def test_health_is_not_serving_while_shutdown_drains(
    locked: tuple[ServerProcess, str, WriteLock],
) -> None:
    srv, run_id, lock = locked
    assert _health(srv.address) == [health_pb2.HealthCheckResponse.SERVING] * 3
    client = TracklineClient(srv.address, retry_seconds=0)
    lock.hold()
    pending = client.stub.LogBatch.future(
        tpb.LogBatchRequest(run_id=run_id, params=[pb.Param(key="p", value="v")]), timeout=60
    )
    time.sleep(0.3)  # in flight: its flush waits for the write lock
    srv.proc.send_signal(signal.SIGTERM)
    not_serving = [health_pb2.HealthCheckResponse.NOT_SERVING] * 3
    assert eventually(lambda: _health(srv.address) == not_serving)
    lock.release()
    pending.result(timeout=60)  # drained: committed and acknowledged
    assert srv.proc.wait(30) == 0
    client.close()


def test_invalid_utf8_is_a_malformed_request(sqlite_server: ServerProcess) -> None:
    raw = tpb.GetRunRequest(run_id="abc").SerializeToString().replace(b"abc", b"\xff\xfe\xfd")
    with grpc.insecure_channel(sqlite_server.address) as channel:
        get_run = channel.unary_unary("/trackline.v1.TrackingService/GetRun")
        with pytest.raises(grpc.RpcError) as err:
            get_run(raw, timeout=10)
        assert _status(err.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
        message = err.value.details()  # type: ignore[attr-defined]
        assert message.startswith("the request is not a valid trackline.v1.GetRunRequest")
        assert "UTF-8" in message and "DecodeError" not in message

        stream = channel.stream_stream("/trackline.v1.IngestService/StreamMetrics")
        first = ipb.StreamMetricsRequest(
            writer_id="abc", writer_key=b"k" * 32, seq=0
        ).SerializeToString()
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([first.replace(b"abc", b"\xff\xfe\xfd")]), timeout=10))
        assert _status(err.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
