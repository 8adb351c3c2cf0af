"""The Model Registry under concurrency and across processes, on SQLite and PostgreSQL:
versions numbered 1..N by 16 client processes at once, an alias moved by 16 threads at once,
a watcher on a second server over the same PostgreSQL, and watches ended by a graceful
shutdown. Through the generated RegistryService stub, one channel per client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from trackline._exceptions import from_rpc_error
from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import registry_pb2_grpc

from tests.support.databases import fresh_postgres_database
from tests.support.servers import ServerProcess, start_server

T = rpb.ModelEventType
CLIENTS = 16

# One client process: connects, says "ready", waits for "go" on stdin, creates its versions
# of the model and prints their numbers as JSON.
_CREATOR = """
import json, sys
import grpc
from trackline.v1 import registry_pb2 as rpb, registry_pb2_grpc
address, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=30)
stub = registry_pb2_grpc.RegistryServiceStub(channel)
print("ready", flush=True)
sys.stdin.readline()
request = rpb.CreateModelVersionRequest(name=name, source="s3://bucket/model")
print(json.dumps([stub.CreateModelVersion(request, timeout=60).model_version.version
                  for _ in range(count)]), flush=True)
"""


def _stub(channel: grpc.Channel) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(channel)


@pytest.fixture
def reg(server: ServerProcess) -> Iterator[registry_pb2_grpc.RegistryServiceStub]:
    """The test's own stub of ``server`` (its channel closed after the test)."""
    with grpc.insecure_channel(server.address) as channel:
        yield _stub(channel)


def _events(
    stub: registry_pb2_grpc.RegistryServiceStub, **fields: object
) -> Iterator[rpb.ModelEvent]:
    request = rpb.WatchModelEventsRequest(**fields)  # type: ignore[arg-type]
    for response in stub.WatchModelEvents(request, timeout=60):
        yield from response.events


def _take(events: Iterator[rpb.ModelEvent], n: int) -> list[rpb.ModelEvent]:
    return [next(events) for _ in range(n)]


def test_processes_number_versions_one_to_n(
    server: ServerProcess, reg: registry_pb2_grpc.RegistryServiceStub
) -> None:
    per_client = 5
    reg.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="busy"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATOR, server.address, "busy", str(per_client)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(CLIENTS)
    ]
    numbers: list[int] = []
    try:
        for proc in procs:  # every client connected before any creates
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0
            numbers += json.loads(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert sorted(numbers) == list(range(1, CLIENTS * per_client + 1))
    found = reg.SearchModelVersions(
        rpb.SearchModelVersionsRequest(filter="name = 'busy'", page_size=1000)
    )
    assert sorted(v.version for v in found.model_versions) == sorted(numbers)


def test_alias_moves_under_concurrency(
    server: ServerProcess, reg: registry_pb2_grpc.RegistryServiceStub
) -> None:
    """16 threads move one alias among 4 versions while a reader checks, in each snapshot,
    that it names exactly one version; the events are every move, in commit order."""
    moves_each, versions = 10, 4
    reg.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="m"))
    for _ in range(versions):
        reg.CreateModelVersion(rpb.CreateModelVersionRequest(name="m", source="x"))
    reg.SetRegisteredModelAlias(rpb.SetRegisteredModelAliasRequest(name="m", alias="c", version=1))
    start = _take(_events(reg, after=0), versions + 2)[-1].id  # the first alias set
    watched = _events(reg, names=["m"], after=start)
    moved: list[int] = []
    lock = threading.Lock()
    done = threading.Event()
    problems: list[str] = []

    def mover(i: int) -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = _stub(channel)
            for k in range(moves_each):
                version = (i + k) % versions + 1
                request = rpb.SetRegisteredModelAliasRequest(name="m", alias="c", version=version)
                stub.SetRegisteredModelAlias(request, timeout=60)
                with lock:
                    moved.append(version)

    def reader() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = _stub(channel)
            while not done.is_set():
                found = stub.SearchModelVersions(
                    rpb.SearchModelVersionsRequest(filter="name = 'm'"), timeout=60
                ).model_versions
                holders = [v.version for v in found if "c" in v.aliases]
                model = stub.GetRegisteredModel(rpb.GetRegisteredModelRequest(name="m"))
                named = [a.version for a in model.registered_model.aliases if a.alias == "c"]
                if len(holders) != 1 or len(named) != 1:
                    problems.append(f"alias on versions {holders}, model says {named}")

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(CLIENTS)]
    checking = threading.Thread(target=reader)
    checking.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    checking.join()
    assert problems == []
    seen = _take(watched, CLIENTS * moves_each)
    assert [e.id for e in seen] == list(range(start + 1, start + 1 + CLIENTS * moves_each))
    assert {e.type for e in seen} == {T.MODEL_EVENT_TYPE_ALIAS_SET}
    assert sorted(e.version for e in seen) == sorted(moved)
    final = reg.GetModelVersionByAlias(rpb.GetModelVersionByAliasRequest(name="m", alias="c"))
    assert final.model_version.version == seen[-1].version  # the last event is the last move


def test_two_replicas_over_one_postgres_number_versions_one_to_n(tmp_path: Path) -> None:
    """Two server processes over one PostgreSQL database, 8 threads each creating versions of
    one model through them at once: the numbers are 1..N, as through one server."""
    url = fresh_postgres_database()
    replicas = [start_server(tmp_path / "a", url), start_server(tmp_path / "b", url)]
    per_thread, threads_per_replica = 5, 8
    numbers: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2 * threads_per_replica)

    def create(address: str) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = _stub(channel)
            start.wait(timeout=30)
            request = rpb.CreateModelVersionRequest(name="shared", source="s3://bucket/model")
            got = [stub.CreateModelVersion(request, timeout=60).model_version.version
                   for _ in range(per_thread)]  # fmt: skip
        with lock:
            numbers.extend(got)

    with grpc.insecure_channel(replicas[0].address) as channel:
        _stub(channel).CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="shared"))
    workers = [
        threading.Thread(target=create, args=(srv.address,))
        for srv in replicas
        for _ in range(threads_per_replica)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert sorted(numbers) == list(range(1, 2 * threads_per_replica * per_thread + 1))


def test_watcher_on_second_server_sees_changes_of_first(tmp_path: Path) -> None:
    url = fresh_postgres_database()
    first = start_server(tmp_path / "a", url)
    second = start_server(tmp_path / "b", url)
    with (
        grpc.insecure_channel(first.address) as writing,
        grpc.insecure_channel(second.address) as watching,
    ):
        watcher = _events(_stub(watching), after=0)  # a fresh store: every event there will be
        reg = _stub(writing)
        reg.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="fraud"))
        for _ in range(2):
            reg.CreateModelVersion(rpb.CreateModelVersionRequest(name="fraud", source="x"))
        reg.SetRegisteredModelAlias(
            rpb.SetRegisteredModelAliasRequest(name="fraud", alias="champion", version=2)
        )
        reg.RenameRegisteredModel(rpb.RenameRegisteredModelRequest(name="fraud", new_name="f2"))
        seen = _take(watcher, 5)
    assert [(e.id, e.type, e.name, e.version) for e in seen] == [
        (1, T.MODEL_EVENT_TYPE_REGISTERED_MODEL_CREATED, "fraud", 0),
        (2, T.MODEL_EVENT_TYPE_MODEL_VERSION_CREATED, "fraud", 1),
        (3, T.MODEL_EVENT_TYPE_MODEL_VERSION_CREATED, "fraud", 2),
        (4, T.MODEL_EVENT_TYPE_ALIAS_SET, "fraud", 2),
        (5, T.MODEL_EVENT_TYPE_REGISTERED_MODEL_RENAMED, "f2", 0),
    ]
    assert (seen[3].alias, seen[4].previous_name) == ("champion", "fraud")


def test_sigterm_ends_open_watches_at_once(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    with grpc.insecure_channel(srv.address) as channel:
        reg = _stub(channel)
        watcher = _events(reg, after=0)
        reg.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="m"))
        _take(watcher, 1)  # the watch is open and polling
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as err:
            next(watcher)
        ended = time.monotonic() - started
        assert srv.proc.wait(10) == 0
        exited = time.monotonic() - started
    refusal = from_rpc_error(err.value)
    assert (refusal.code, refusal.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    assert ended < 1 and exited < 2, (ended, exited)
