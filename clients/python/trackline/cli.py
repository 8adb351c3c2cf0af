"""The ``trackline`` command: ``server``, ``experiments create``, ``runs show``."""

from __future__ import annotations

import argparse
import json
import sys

from google.protobuf import json_format

from ._client import TracklineClient
from ._exceptions import TracklineError


def _print(msg: object, as_json: bool, lines: list[tuple[str, str]]) -> None:
    if as_json:
        print(json.dumps(json_format.MessageToDict(msg), indent=2))  # type: ignore[arg-type]
        return
    width = max((len(k) for k, _ in lines), default=0)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trackline")
    parser.add_argument("--uri", default=None, help="server address (env TRACKLINE_URI)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("server", help="serve the tracking API")
    exps = sub.add_parser("experiments").add_subparsers(dest="sub", required=True)
    create = exps.add_parser("create")
    create.add_argument("name")
    create.add_argument("--json", action="store_true")
    runs = sub.add_parser("runs").add_subparsers(dest="sub", required=True)
    show = runs.add_parser("show")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    try:
        from trackline_server.config import add_arguments
    except ImportError:
        has_server = False
    else:
        has_server = True
        add_arguments(srv)
    args = parser.parse_args(argv)

    if args.cmd == "server":
        if not has_server:
            sys.exit("trackline: the server is not installed (pip install trackline-server)")
        import asyncio

        from trackline_server.app import serve
        from trackline_server.config import from_args

        asyncio.run(serve(from_args(args)))
        return
    client = TracklineClient(args.uri, retry_seconds=2.0)
    try:
        if args.cmd == "experiments":
            exp = client.create_experiment(args.name)
            _print(exp, args.json, [("experiment_id", exp.experiment_id), ("name", exp.name)])
        else:
            run = client.get_run(args.run_id)
            lines = [
                ("run_id", run.run_id),
                ("experiment_id", run.experiment_id),
                ("run_name", run.run_name),
                ("status", str(run.status)),
            ]
            lines += [(f"params.{p.key}", p.value) for p in run.params]
            lines += [(f"tags.{t.key}", t.value) for t in run.tags]
            lines += [
                (f"metrics.{m.key}", f"{m.value} (step {m.step})") for m in run.latest_metrics
            ]
            _print(run, args.json, lines)
    except TracklineError as err:
        sys.exit(f"trackline: {err}")


if __name__ == "__main__":
    main()
