"""The ``trackline`` command: ``server``, ``experiments list|create|delete|restore``,
``runs list|show|search|delete|restore``, ``models ...`` (the Model Registry, in
``_cli_models``), ``artifacts list|upload|download|delete`` (in ``_cli_artifacts``), ``run``
(a project, in ``_cli_projects``, with exit statuses of its own), ``worker`` (runs projects
from the server's queue, in ``_cli_worker``), ``tokens create|list|revoke`` and ``whoami``
(access tokens, in ``_cli_tokens``).

Tables go to stdout; ``--json`` prints the API's messages as JSON instead (one object for a
single resource, a list otherwise). Table cells show control characters escaped and are cut
to 80 characters; a stored value the table cannot show (a time out of range, an unknown
status) is printed raw rather than failing the listing. Any failure, a bad argument
included, is one line on stderr and exit status 1; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence

from trackline.v1 import resources_pb2 as pb

from . import _cli_artifacts, _cli_models, _cli_projects, _cli_tokens, _cli_worker
from ._cli_format import (
    OneLineParser,
    enum_name,
    escaped,
    local_time,
    positive_int,
    print_fields,
    print_json,
    print_table,
)
from ._client import TracklineClient, ViewType
from ._exceptions import TracklineError

_KEY_IN_FILTER = re.compile(r"\b(metrics?|params?|tags?)\.(`[^`]+`|\"[^\"]+\"|[\w./:-]+)")
MAX_ERROR = 1000


def _status(run: pb.Run) -> str:
    return enum_name(pb.RunStatus, run.status, "RUN_STATUS_")


def _stage(exp: pb.Experiment) -> str:
    return enum_name(pb.LifecycleStage, exp.lifecycle_stage, "LIFECYCLE_STAGE_").lower()


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
        print_json(runs)
        return
    header = ["RUN ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION", *columns]
    rows = (
        [
            r.run_id,
            r.experiment_id,
            r.run_name,
            _status(r),
            local_time(r.start_time),
            _duration(r),
            *(_column_value(r, c) for c in columns),
        ]
        for r in runs
    )
    print_table(header, rows, "no runs found")


def _show_run(run: pb.Run, as_json: bool) -> None:
    if as_json:
        print_json(run)
        return
    lines = [
        ("run_id", run.run_id),
        ("experiment_id", run.experiment_id),
        ("run_name", run.run_name),
        ("status", _status(run)),
        ("start_time", local_time(run.start_time)),
        ("end_time", local_time(run.end_time) if run.HasField("end_time") else "-"),
    ]
    if run.user_id:
        lines.append(("user_id", run.user_id))
    if run.parent_run_id:
        lines.append(("parent_run_id", run.parent_run_id))
    lines += [(f"params.{p.key}", p.value) for p in run.params]
    lines += [(f"tags.{t.key}", t.value) for t in run.tags]
    lines += [(f"metrics.{m.key}", f"{m.value:.6g} (step {m.step})") for m in run.latest_metrics]
    for found in run.inputs:
        lines.append((f"inputs.{found.dataset.name}", _input_summary(found)))
        lines += [(f"inputs.{found.dataset.name}.tags.{t.key}", t.value) for t in found.tags]
    print_fields(lines)


def _input_summary(found: pb.DatasetInput) -> str:
    """'digest D, context C, N rows, source S': what is known of a run's input."""
    d = found.dataset
    parts = [f"digest {d.digest}"]
    if found.context:
        parts.append(f"context {found.context}")
    try:
        rows = json.loads(d.profile).get("num_rows") if d.profile else None
    except (ValueError, AttributeError):  # a profile that is not a JSON object
        rows = None
    if isinstance(rows, int) and not isinstance(rows, bool):
        parts.append(f"{rows} rows")
    if d.source:
        parts.append(f"source {d.source}")
    return ", ".join(parts)


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


def _parser(server_flags: bool = True) -> argparse.ArgumentParser:
    """The command line; ``server_flags`` False leaves out the server's own flags, whose
    module pulls in SQLAlchemy (a quarter of a second at every start of every command)."""
    parser = OneLineParser(prog="trackline", description="Trackline experiment tracking")
    parser.add_argument(
        "--uri",
        default=None,
        help="server: host[:port], http://host[:port] or https://host[:port] (TLS; also"
        " grpcs://) (env TRACKLINE_URI; default localhost:50051)",
    )
    parser.add_argument("--token", default=None, help="bearer token (env TRACKLINE_TOKEN)")
    parser.add_argument(
        "--ca-file",
        default=None,
        help="TLS: trust the CA certificates of this PEM bundle instead of the system's roots"
        " (env TRACKLINE_CA_FILE); with a URI without a scheme, asks for TLS",
    )
    parser.add_argument(
        "--client-cert",
        default=None,
        help="mutual TLS: present this PEM certificate, with --client-key (env"
        " TRACKLINE_CLIENT_CERT)",
    )
    parser.add_argument(
        "--client-key",
        default=None,
        help="mutual TLS: the PEM private key of --client-cert (env TRACKLINE_CLIENT_KEY)",
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    srv = sub.add_parser("server", help="serve the tracking API")
    try:
        if server_flags:
            from trackline_server.config import add_arguments

            add_arguments(srv)
    except ImportError:
        srv.set_defaults(server_missing=True)

    view = OneLineParser(add_help=False)
    view.add_argument("--view", choices=["active", "deleted", "all"], default="active")
    view.add_argument("--json", action="store_true", help="print JSON instead of a table")
    view.add_argument(
        "--max-results", type=positive_int, default=1000, help="at most this many rows"
    )
    view.add_argument("--order-by", action="append", default=[], help="e.g. 'metrics.loss ASC'")

    exps = sub.add_parser("experiments", help="list, create, delete and restore experiments")
    exps_sub = exps.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)
    e_list = exps_sub.add_parser("list", parents=[view], help="list experiments")
    e_list.add_argument("--filter", default="", help="e.g. \"name LIKE 'vision%%'\"")
    e_create = exps_sub.add_parser("create", help="create an experiment")
    e_create.add_argument("name")
    e_create.add_argument("--json", action="store_true")
    for verb in ("delete", "restore"):
        exps_sub.add_parser(verb, help=f"{verb} an experiment").add_argument("experiment_id")

    runs = sub.add_parser("runs", help="list, show, search, delete and restore runs")
    runs_sub = runs.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)
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
    for verb in ("delete", "restore"):
        runs_sub.add_parser(verb, help=f"{verb} a run").add_argument("run_id")
    _cli_models.add_parsers(sub)
    _cli_artifacts.add_parsers(sub)
    _cli_projects.add_parsers(sub)
    _cli_worker.add_parsers(sub)
    _cli_tokens.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("trackline: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:  # the reader left (``trackline runs list | head``)
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _main(argv: list[str] | None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(server_flags="server" in argv).parse_args(argv)
    if args.cmd == "server":
        if getattr(args, "server_missing", False):
            sys.exit("trackline: the server is not installed (pip install trackline-server)")
        from trackline_server.app import run

        run(args)
        return
    if args.cmd == "run":  # its own exit statuses: the project's, 130, 2 for an error
        sys.exit(_cli_projects.main(args))
    if args.cmd == "worker":
        sys.exit(_cli_worker.main(args))
    # A failure is one line: the client's "waiting for the server" warning would be a second.
    logging.getLogger("trackline").setLevel(logging.ERROR)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # a name the terminal cannot encode must not end the listing
        reconfigure(errors="backslashreplace")
    client: TracklineClient | None = None
    try:
        client = TracklineClient(
            args.uri,
            token=args.token,
            retry_seconds=2.0,
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
        )
        _dispatch(client, args)
    except BrokenPipeError:
        raise
    except (TracklineError, ValueError, OSError, ImportError) as err:  # OSError: local files
        text = " ".join(str(err).split())  # one line, whatever the server's message holds
        if len(text) > MAX_ERROR:
            text = text[: MAX_ERROR - 1] + "\u2026"
        sys.exit(f"trackline: {text}")
    finally:
        if client is not None:
            client.close()


def _dispatch(client: TracklineClient, args: argparse.Namespace) -> None:
    view: ViewType = getattr(args, "view", "active")
    if args.cmd == "models":
        _cli_models.dispatch(client, args)
    elif args.cmd == "artifacts":
        _cli_artifacts.dispatch(client, args)
    elif args.cmd in ("tokens", "whoami"):
        _cli_tokens.dispatch(client, args)
    elif args.cmd == "experiments" and args.sub == "create":
        exp = client.create_experiment(args.name)
        if args.json:
            print_json(exp)
        else:
            print(f"created experiment {exp.experiment_id} ({escaped(exp.name)})")
    elif args.cmd == "experiments" and args.sub == "delete":
        client.delete_experiment(args.experiment_id)
        print(f"deleted experiment {args.experiment_id}")
    elif args.cmd == "experiments" and args.sub == "restore":
        client.restore_experiment(args.experiment_id)
        print(f"restored experiment {args.experiment_id}")
    elif args.cmd == "experiments":
        exps = list(
            client.search_experiments(
                args.filter, order_by=args.order_by, view_type=view, max_results=args.max_results
            )
        )
        if args.json:
            print_json(exps)
            return
        rows = (
            [
                e.experiment_id,
                e.name,
                _stage(e),
                local_time(e.creation_time),
                e.artifact_location,
            ]
            for e in exps
        )
        print_table(["ID", "NAME", "STAGE", "CREATED", "ARTIFACT LOCATION"], rows, "no experiments")
    elif args.sub == "show":
        _show_run(client.get_run(args.run_id), args.json)
    elif args.sub == "delete":
        client.delete_run(args.run_id)
        print(f"deleted run {args.run_id}")
    elif args.sub == "restore":
        client.restore_run(args.run_id)
        print(f"restored run {args.run_id}")
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
