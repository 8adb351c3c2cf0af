"""The ``trackline`` command: ``server``, ``experiments list|create``, ``runs list|show|search``.

Tables go to stdout; ``--json`` prints the API's messages as JSON instead (one object for a
single resource, a list otherwise). Any failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Iterable, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message

from trackline.v1 import resources_pb2 as pb

from ._client import TracklineClient, ViewType
from ._exceptions import TracklineError

_KEY_IN_FILTER = re.compile(r"\b(metrics?|params?|tags?)\.(`[^`]+`|\"[^\"]+\"|[\w./:-]+)")


def _json(msgs: Message | Sequence[Message]) -> None:
    def as_dict(m: Message) -> object:
        return json_format.MessageToDict(m, always_print_fields_with_no_presence=True)

    data = as_dict(msgs) if isinstance(msgs, Message) else [as_dict(m) for m in msgs]
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> None:
    body = [list(r) for r in rows]
    if not body:
        print(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    for line in [list(header), *body]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _time(ms: int) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _status(run: pb.Run) -> str:
    return pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_")


def _stage(exp: pb.Experiment) -> str:
    return pb.LifecycleStage.Name(exp.lifecycle_stage).removeprefix("LIFECYCLE_STAGE_").lower()


def _duration(run: pb.Run) -> str:
    if not run.HasField("end_time"):
        return "-"
    seconds = max(0, run.end_time - run.start_time) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _column_value(run: pb.Run, column: str) -> str:
    kind, _, key = column.partition(".")
    key = key.strip('`"')
    if kind.startswith("metric"):
        found = [m.value for m in run.latest_metrics if m.key == key]
        return f"{found[0]:.6g}" if found else "-"
    pairs = run.params if kind.startswith("param") else run.tags
    return next((p.value for p in pairs if p.key == key), "-")


def _print_runs(runs: list[pb.Run], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        _json(runs)
        return
    header = ["RUN ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION", *columns]
    rows = (
        [
            r.run_id,
            r.experiment_id,
            r.run_name,
            _status(r),
            _time(r.start_time),
            _duration(r),
            *(_column_value(r, c) for c in columns),
        ]
        for r in runs
    )
    _table(header, rows, "no runs found")


def _show_run(run: pb.Run, as_json: bool) -> None:
    if as_json:
        _json(run)
        return
    lines = [
        ("run_id", run.run_id),
        ("experiment_id", run.experiment_id),
        ("run_name", run.run_name),
        ("status", _status(run)),
        ("start_time", _time(run.start_time)),
        ("end_time", _time(run.end_time) if run.HasField("end_time") else "-"),
    ]
    if run.parent_run_id:
        lines.append(("parent_run_id", run.parent_run_id))
    lines += [(f"params.{p.key}", p.value) for p in run.params]
    lines += [(f"tags.{t.key}", t.value) for t in run.tags]
    lines += [(f"metrics.{m.key}", f"{m.value:.6g} (step {m.step})") for m in run.latest_metrics]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def _columns(explicit: str | None, *texts: str) -> list[str]:
    """The --columns list, or the metrics/params/tags named in the filter and order_by."""
    if explicit is not None:
        return [c.strip() for c in explicit.split(",") if c.strip()]
    found: list[str] = []
    for text in texts:
        for kind, key in _KEY_IN_FILTER.findall(text):
            column = f"{kind.rstrip('s')}s.{key}"
            if column not in found:
                found.append(column)
    return found


def _experiment_ids(client: TracklineClient, ids: list[str], names: list[str]) -> list[str]:
    return ids + [client.get_experiment_by_name(n).experiment_id for n in names]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackline", description="Trackline experiment tracking")
    parser.add_argument("--uri", default=None, help="server address (env TRACKLINE_URI)")
    parser.add_argument("--token", default=None, help="bearer token (env TRACKLINE_TOKEN)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    srv = sub.add_parser("server", help="serve the tracking API")
    try:
        from trackline_server.config import add_arguments
    except ImportError:
        srv.set_defaults(server_missing=True)
    else:
        add_arguments(srv)

    view = argparse.ArgumentParser(add_help=False)
    view.add_argument("--view", choices=["active", "deleted", "all"], default="active")
    view.add_argument("--json", action="store_true", help="print JSON instead of a table")
    view.add_argument("--max-results", type=int, default=1000, help="at most this many rows")
    view.add_argument("--order-by", action="append", default=[], help="e.g. 'metrics.loss ASC'")

    exps = sub.add_parser("experiments", help="list and create experiments")
    exps_sub = exps.add_subparsers(dest="sub", required=True)
    e_list = exps_sub.add_parser("list", parents=[view], help="list experiments")
    e_list.add_argument("--filter", default="", help="e.g. \"name LIKE 'vision%%'\"")
    e_create = exps_sub.add_parser("create", help="create an experiment")
    e_create.add_argument("name")
    e_create.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list, show and search runs")
    runs_sub = runs.add_subparsers(dest="sub", required=True)
    for name, doc in (("list", "list runs"), ("search", "search runs with a filter")):
        p = runs_sub.add_parser(name, parents=[view], help=doc)
        if name == "search":
            p.add_argument("filter", help="e.g. \"metrics.loss < 0.3 and params.opt = 'adam'\"")
        p.add_argument("-e", "--experiment-id", action="append", default=[])
        p.add_argument("-n", "--experiment-name", action="append", default=[])
        p.add_argument(
            "--columns",
            default=None,
            help="comma-separated metrics.X, params.X, tags.X to show (default: those in the"
            " filter and order)",
        )
    show = runs_sub.add_parser("show", help="show one run with its data")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.cmd == "server":
        if getattr(args, "server_missing", False):
            sys.exit("trackline: the server is not installed (pip install trackline-server)")
        from trackline_server.app import run

        run(args)
        return
    client = TracklineClient(args.uri, token=args.token, retry_seconds=2.0)
    try:
        _dispatch(client, args)
    except TracklineError as err:
        sys.exit(f"trackline: {err}")
    except ValueError as err:
        sys.exit(f"trackline: {err}")
    finally:
        client.close()


def _dispatch(client: TracklineClient, args: argparse.Namespace) -> None:
    view: ViewType = getattr(args, "view", "active")
    if args.cmd == "experiments" and args.sub == "create":
        exp = client.create_experiment(args.name)
        if args.json:
            _json(exp)
        else:
            print(f"created experiment {exp.experiment_id} ({exp.name})")
    elif args.cmd == "experiments":
        exps = list(
            client.search_experiments(
                args.filter, order_by=args.order_by, view_type=view, max_results=args.max_results
            )
        )
        if args.json:
            _json(exps)
            return
        rows = (
            [
                e.experiment_id,
                e.name,
                _stage(e),
                _time(e.creation_time),
                e.artifact_location,
            ]
            for e in exps
        )
        _table(["ID", "NAME", "STAGE", "CREATED", "ARTIFACT LOCATION"], rows, "no experiments")
    elif args.sub == "show":
        _show_run(client.get_run(args.run_id), args.json)
    else:
        filter_text = getattr(args, "filter", "")
        ids = _experiment_ids(client, args.experiment_id, args.experiment_name)
        found = list(
            client.search_runs(
                ids,
                filter_text,
                order_by=args.order_by,
                view_type=view,
                max_results=args.max_results,
            )
        )
        columns = _columns(args.columns, filter_text, *args.order_by)
        _print_runs(found, columns, args.json)


if __name__ == "__main__":
    main()
