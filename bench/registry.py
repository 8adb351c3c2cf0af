"""Model Registry figures for a fresh server on SQLite and (with --pg-url) PostgreSQL: model
version creations/s with 1 and 16 clients creating versions of one model, ResolveModelUri
calls/s (`models:/<name>@<alias>`, driven by ghz as in bench/unary.py), and event latency from
a change's commit to a watcher receiving it, p50/p99. Figures only: nothing here passes or
fails on time.

Each client is a thread with its own channel (the generated RegistryService stub). An event's
latency is the watcher's receive time less the event's ``time``, which the server stamps in
the change's transaction just before the commit (both clocks are this machine's); the changes
come one at a time at random intervals (0 to 40 ms), so they fall anywhere in a poll period.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from trackline.v1 import registry_pb2 as rpb
from trackline.v1 import registry_pb2_grpc

from bench.stores import run_on_stores
from bench.unary import ghz
from tests.support.servers import start_server

REGISTRY_PROTO = ("protos", "trackline/v1/registry.proto")
MODEL = "bench-model"


def _stub(channel: grpc.Channel) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(channel)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def creations(address: str, clients: int, seconds: float) -> str:
    """Version creations/s of ``clients`` threads creating versions of MODEL, and each
    call's p50/p99."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    go = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = _stub(channel)
            request = rpb.CreateModelVersionRequest(name=MODEL, source="s3://bucket/model")
            stub.GetRegisteredModel(rpb.GetRegisteredModelRequest(name=MODEL))  # connected
            go.wait()
            end = time.monotonic() + seconds
            while (start := time.monotonic()) < end:
                stub.CreateModelVersion(request, timeout=60)
                latencies[i].append((time.monotonic() - start) * 1000)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    go.wait()
    start = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    every = [ms for own in latencies for ms in own]
    return (
        f"{len(every) / elapsed:,.0f} creations/s, p50 {_percentile(every, 0.5):.2f} ms,"
        f" p99 {_percentile(every, 0.99):.2f} ms"
    )


def event_latency(address: str, seconds: float) -> str:
    """p50/p99 from an event's commit to a watcher of its model receiving it."""
    received: list[float] = []
    with (
        grpc.insecure_channel(address) as watching,
        grpc.insecure_channel(address) as writing,
    ):
        writer = _stub(writing)
        writer.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name="bench-events"))
        writer.CreateModelVersion(rpb.CreateModelVersionRequest(name="bench-events", source="x"))
        stream = _stub(watching).WatchModelEvents(
            rpb.WatchModelEventsRequest(names=["bench-events"], after=0)
        )
        opened = threading.Event()

        def watch() -> None:
            try:
                for response in stream:
                    now_ms = time.time() * 1000
                    for event in response.events:
                        if event.type == rpb.MODEL_EVENT_TYPE_MODEL_VERSION_TAG_SET:
                            received.append(now_ms - event.time)
                        else:
                            opened.set()  # the model's creation and first version: it watches
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                    raise

        watcher = threading.Thread(target=watch)
        watcher.start()
        opened.wait(30)
        rng = random.Random(7)
        end = time.monotonic() + seconds
        changes = 0
        while time.monotonic() < end:
            writer.SetModelVersionTag(
                rpb.SetModelVersionTagRequest(
                    name="bench-events", version=1, key="k", value=str(changes)
                )
            )
            changes += 1
            time.sleep(rng.uniform(0, 0.04))
        deadline = time.monotonic() + 5
        while len(received) < changes and time.monotonic() < deadline:
            time.sleep(0.01)
        stream.cancel()
        watcher.join()
    return (
        f"{len(received)} of {changes} changes, p50 {_percentile(received, 0.5):.1f} ms,"
        f" p99 {_percentile(received, 0.99):.1f} ms"
    )


def bench_store(label: str, make_uri: Callable[[], str | None], seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Path(tmp), make_uri())
        try:
            with grpc.insecure_channel(srv.address) as channel:
                stub = _stub(channel)
                stub.CreateRegisteredModel(rpb.CreateRegisteredModelRequest(name=MODEL))
                for clients in (1, 16):
                    figures = creations(srv.address, clients, seconds)
                    print(f"{label}, CreateModelVersion of one model, {clients} client(s):"
                          f" {figures}", flush=True)  # fmt: skip
                alias = rpb.SetRegisteredModelAliasRequest(name=MODEL, alias="champion", version=1)
                stub.SetRegisteredModelAlias(alias)
            uri = f"models:/{MODEL}@champion"
            for concurrency in (1, 16):
                figures = ghz(srv.address, "trackline.v1.RegistryService.ResolveModelUri",
                              {"uri": uri}, concurrency, seconds, REGISTRY_PROTO)  # fmt: skip
                print(f"{label}, ResolveModelUri {uri}, concurrency {concurrency}: {figures}",
                      flush=True)  # fmt: skip
            print(f"{label}, event latency (commit -> watcher receives), one watcher:"
                  f" {event_latency(srv.address, seconds)}", flush=True)  # fmt: skip
        finally:
            srv.stop()


def main() -> None:
    run_on_stores(__doc__, bench_store)


if __name__ == "__main__":
    main()
