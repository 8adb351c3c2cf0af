"""``trackline models list|show|versions|alias set|alias delete|transition|watch``: the
Model Registry on the command line, printed as the ``runs`` commands print (tables, or the
API's messages with ``--json``). ``watch`` prints one line per registry change as it
commits (one JSON object per line with ``--json``) until Ctrl-C."""

from __future__ import annotations

import argparse
import json

from trackline.v1 import registry_pb2 as rpb

from ._cli_format import (
    OneLineParser,
    as_dict,
    enum_name,
    escaped,
    local_time,
    positive_int,
    print_fields,
    print_json,
    print_table,
)
from ._client import TracklineClient


def add_parsers(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    """Adds ``models`` and its subcommands to the ``trackline`` command's subparsers."""
    listing = OneLineParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument(
        "--max-results", type=positive_int, default=1000, help="at most this many rows"
    )
    listing.add_argument("--order-by", action="append", default=[], help="e.g. 'name DESC'")
    as_json = OneLineParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    models = sub.add_parser("models", help="list, show and promote registered models")
    models_sub = models.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)
    m_list = models_sub.add_parser("list", parents=[listing], help="list registered models")
    m_list.add_argument("--filter", default="", help="e.g. \"name LIKE 'fraud%%'\"")
    show = models_sub.add_parser(
        "show", parents=[as_json], help="show a model, its aliases and latest versions"
    )
    show.add_argument("name")
    versions = models_sub.add_parser("versions", parents=[listing], help="list a model's versions")
    versions.add_argument("name")
    versions.add_argument("--filter", default="", help="e.g. \"tags.env = 'prod'\"")

    alias = models_sub.add_parser("alias", help="set or delete an alias of a model")
    alias_sub = alias.add_subparsers(dest="alias_sub", metavar="SUBCOMMAND", required=True)
    a_set = alias_sub.add_parser("set", help="point an alias at a version")
    a_set.add_argument("name")
    a_set.add_argument("alias")
    a_set.add_argument("version", type=positive_int)
    a_delete = alias_sub.add_parser("delete", help="delete an alias")
    a_delete.add_argument("name")
    a_delete.add_argument("alias")

    move = models_sub.add_parser(
        "transition", parents=[as_json], help="move a version to another stage"
    )
    move.add_argument("name")
    move.add_argument("version", type=positive_int)
    move.add_argument("stage", help="None, Staging, Production or Archived")
    move.add_argument(
        "--archive-existing",
        action="store_true",
        help="also archive the model's other versions in that stage",
    )

    watch = models_sub.add_parser(
        "watch", help="print registry changes as they commit, until Ctrl-C"
    )
    watch.add_argument(
        "--name", action="append", default=[], help="only this model's changes (repeatable)"
    )
    watch.add_argument(
        "--after",
        type=_event_id,
        default=None,
        help="first every change after this event id, then the new ones",
    )
    watch.add_argument("--json", action="store_true", help="print one JSON object per line")


def dispatch(client: TracklineClient, args: argparse.Namespace) -> None:
    """Runs the ``models`` subcommand ``args`` names."""
    if args.sub == "list":
        models = client.search_registered_models(
            args.filter, order_by=args.order_by, max_results=args.max_results
        )
        _print_models(list(models), args.json)
    elif args.sub == "show":
        model = client.get_registered_model(args.name)
        _show_model(model, client.get_latest_versions(args.name), args.json)
    elif args.sub == "versions":
        client.get_registered_model(args.name)  # NOT_FOUND names a missing model
        versions = client.search_model_versions(
            _of_model(args.name, args.filter), order_by=args.order_by, max_results=args.max_results
        )
        _print_versions(list(versions), args.json)
    elif args.sub == "alias" and args.alias_sub == "set":
        client.set_registered_model_alias(args.name, args.alias, args.version)
        print(f"alias {escaped(args.alias)} of {escaped(args.name)} -> version {args.version}")
    elif args.sub == "alias":
        client.delete_registered_model_alias(args.name, args.alias)
        print(f"deleted alias {escaped(args.alias)} of {escaped(args.name)}")
    elif args.sub == "transition":
        moved = client.transition_model_version_stage(
            args.name, args.version, args.stage, args.archive_existing
        )
        if args.json:
            print_json(moved)
        else:
            print(f"{escaped(moved.name)} version {moved.version} is now in {_stage(moved.stage)}")
    else:
        _watch(client, args.name, args.after, args.json)


def _event_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an event id (0 or more), not {text!r:.80}")
    return value


def _of_model(name: str, filter_text: str) -> str:
    """``filter_text`` limited to the versions of model ``name``."""
    quoted = "'" + name.replace("\\", "\\\\").replace("'", "''") + "'"
    return f"name = {quoted}" + (f" AND ({filter_text})" if filter_text.strip() else "")


def _stage(stage: int) -> str:
    """The stage as MLflow spells it: None, Staging, Production, Archived."""
    return enum_name(rpb.ModelStage, stage, "MODEL_STAGE_").capitalize()


def _status(status: int) -> str:
    return enum_name(rpb.ModelVersionStatus, status, "MODEL_VERSION_STATUS_")


def _aliases(model: rpb.RegisteredModel) -> str:
    return ", ".join(f"{a.alias}={a.version}" for a in model.aliases) or "-"


def _print_models(models: list[rpb.RegisteredModel], as_json: bool) -> None:
    if as_json:
        print_json(models)
        return
    rows = (
        [
            m.name,
            _aliases(m),
            local_time(m.creation_time),
            local_time(m.last_updated_time),
            m.description,
        ]
        for m in models
    )
    print_table(["NAME", "ALIASES", "CREATED", "UPDATED", "DESCRIPTION"], rows, "no models found")


def _show_model(model: rpb.RegisteredModel, latest: list[rpb.ModelVersion], as_json: bool) -> None:
    """The model's fields, tags and aliases, then its latest version in each stage; with
    ``as_json``, one object: ``registeredModel`` and ``latestVersions``."""
    if as_json:
        data = {"registeredModel": as_dict(model), "latestVersions": [as_dict(v) for v in latest]}
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    fields = [
        ("name", model.name),
        ("description", model.description or "-"),
        ("creation_time", local_time(model.creation_time)),
        ("last_updated_time", local_time(model.last_updated_time)),
    ]
    fields += [(f"tags.{t.key}", t.value) for t in model.tags]
    fields += [(f"aliases.{a.alias}", f"version {a.version}") for a in model.aliases]
    fields += [
        (f"latest.{_stage(v.stage)}", f"version {v.version} ({_status(v.status)}) {v.source}")
        for v in latest
    ]
    print_fields(fields)


def _print_versions(versions: list[rpb.ModelVersion], as_json: bool) -> None:
    if as_json:
        print_json(versions)
        return
    rows = (
        [
            str(v.version),
            _stage(v.stage),
            _status(v.status),
            ", ".join(v.aliases) or "-",
            v.run_id or "-",
            local_time(v.creation_time),
            v.source,
        ]
        for v in versions
    )
    header = ["VERSION", "STAGE", "STATUS", "ALIASES", "RUN ID", "CREATED", "SOURCE"]
    print_table(header, rows, "no versions found")


def _watch(client: TracklineClient, names: list[str], after: int | None, as_json: bool) -> None:
    """Prints each event as it arrives (flushed, so that a pipe sees it at once) until the
    stream ends or Ctrl-C."""
    with client.watch_model_events(names, after) as events:
        for event in events:
            text = json.dumps(as_dict(event), ensure_ascii=False) if as_json else _line(event)
            print(text, flush=True)


def _line(event: rpb.ModelEvent) -> str:
    """'ID  TIME  TYPE  NAME  details': what changed, in one line."""
    parts = [
        str(event.id),
        local_time(event.time),
        enum_name(rpb.ModelEventType, event.type, "MODEL_EVENT_TYPE_"),
        event.name,
    ]
    if event.previous_name:
        parts.append(f"from {event.previous_name}")
    if event.version:
        parts.append(f"version {event.version}")
    if event.alias:
        parts.append(f"alias {event.alias}")
    if event.key:
        parts.append(f"key {event.key}")
    if event.stage:
        parts.append(f"stage {_stage(event.stage)}")
    if event.status:
        parts.append(f"status {_status(event.status)}")
    return escaped("  ".join(parts))
