"""What tokens and TLS cost a unary call: GetRun (5 params, tags and metrics) at concurrency
1 and 16 over one connection, driven by ghz, on SQLite: a server without tokens; then, on a
server with tokens, a stored writer token and a reader token scoped to the run's experiment
(its scope checked on every call), in plaintext and over TLS. Prints calls/s with p50 and
p99. Figures only: nothing here passes or fails on time."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from trackline import TracklineClient

from bench.unary import ghz, seed
from tests.support.auth import BOOTSTRAP, start_secured, token
from tests.support.servers import start_server
from tests.support.tls import make_pki

SECONDS = 5.0


def get_run(address: str, run_id: str, flags: tuple[str, ...], label: str) -> None:
    for concurrency in (1, 16):
        method = "trackline.v1.TrackingService.GetRun"
        figures = ghz(address, method, {"run_id": run_id}, concurrency, SECONDS, transport=flags)
        print(f"GetRun, {label}, concurrency {concurrency}: {figures}", flush=True)


def bearer(secret: str) -> tuple[str, ...]:
    return ("--metadata", json.dumps({"authorization": f"Bearer {secret}"}))


def the_run(client: TracklineClient) -> tuple[str, str]:
    """GetRun's run (``bench.unary.seed`` without its search runs) and its experiment."""
    try:
        run_id, _ = seed(client, search_runs=0)
        return run_id, client.get_run(run_id).experiment_id
    finally:
        client.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        srv = start_server(folder / "open")
        try:
            run_id, _ = the_run(TracklineClient(srv.address))
            get_run(srv.address, run_id, ("--insecure",), "no tokens")
        finally:
            srv.stop()
        pki = make_pki(folder / "pki")
        for transport in ("plaintext", "TLS"):
            tls = transport == "TLS"
            args = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
            srv = start_secured(folder / transport, extra_args=args if tls else ())
            try:
                uri = f"grpcs://{srv.address}" if tls else srv.address
                files = {"ca_file": pki.ca} if tls else {}
                admin = TracklineClient(uri, token=BOOTSTRAP, **files)
                writer = token(admin, "bench-writer", "writer")
                run_id, experiment_id = the_run(admin)
                scoped_admin = TracklineClient(uri, token=BOOTSTRAP, **files)
                scoped = token(scoped_admin, "bench-scoped", "reader", experiments=[experiment_id])
                scoped_admin.close()
                base = ("--cacert", str(pki.ca)) if tls else ("--insecure",)
                get_run(srv.address, run_id, base + bearer(writer), f"{transport}, writer token")
                get_run(srv.address, run_id, base + bearer(scoped), f"{transport}, scoped reader")
            finally:
                srv.stop()


if __name__ == "__main__":
    main()
