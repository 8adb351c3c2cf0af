"""``trackline artifacts list|upload|download|delete``: a run's artifacts on the command line.
``list`` prints a table (or JSON with ``--json``); ``upload`` and ``download`` draw a
progress bar on stderr when it is a terminal (or with ``--progress``); ``download`` prints
the local path of what it downloaded, and takes an artifact URI (``runs:/``, ``models:/``,
``s3://``) in place of a run id."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import AbstractContextManager, nullcontext

from ._artifact_uris import download_uri, is_uri
from ._cli_format import OneLineParser, print_table
from ._client import TracklineClient
from ._progress import ProgressBar


def add_parsers(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    """Adds ``artifacts`` and its subcommands to the ``trackline`` command's subparsers."""
    bar = OneLineParser(add_help=False)
    bar.add_argument(
        "--progress", action="store_true", help="draw a progress bar on stderr (default: on a tty)"
    )
    arts = sub.add_parser("artifacts", help="list, upload, download and delete run artifacts")
    arts_sub = arts.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)
    listing = arts_sub.add_parser("list", help="list a run's artifacts under a path")
    listing.add_argument("run_id")
    listing.add_argument("path", nargs="?", default="", help="a directory (default: the root)")
    listing.add_argument("--recursive", action="store_true", help="every file under the path")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    upload = arts_sub.add_parser("upload", parents=[bar], help="upload a file or directory")
    upload.add_argument("run_id")
    upload.add_argument("local_path", help="a file, or a directory whose files to upload")
    upload.add_argument(
        "--artifact-path", default=None, help="where under the run's artifacts (default: root)"
    )
    download = arts_sub.add_parser("download", parents=[bar], help="download artifacts")
    download.add_argument("run_id", help="a run id, or an artifact URI (runs:/, models:/, s3://)")
    download.add_argument("path", nargs="?", default="", help="a file or directory (default: all)")
    download.add_argument("--dst", default=None, help="local directory (default: a new temp one)")
    delete = arts_sub.add_parser("delete", help="delete a file or directory of a run's artifacts")
    delete.add_argument("run_id")
    delete.add_argument("path", nargs="?", default="", help="default: every artifact of the run")


def dispatch(client: TracklineClient, args: argparse.Namespace) -> None:
    """Runs the ``artifacts`` subcommand ``args`` names."""
    if args.sub == "list":
        _print_files(client, args.run_id, args.path, args.recursive, args.json)
    elif args.sub == "upload":
        local = args.local_path
        with _bar(args, "upload") as bar:
            if os.path.isdir(local):
                client.log_artifacts(args.run_id, local, args.artifact_path, progress=bar)
            else:
                client.log_artifact(args.run_id, local, args.artifact_path, progress=bar)
        where = args.artifact_path.rstrip("/") + "/" if args.artifact_path else ""
        print(f"uploaded {local} to runs:/{args.run_id}/{where}")
    elif args.sub == "download" and is_uri(args.run_id):
        if args.path:
            raise ValueError("give a run id and a path, or an artifact URI alone")
        print(download_uri(client, args.run_id, args.dst))
    elif args.sub == "download":
        with _bar(args, "download") as bar:
            local = client.download_artifacts(args.run_id, args.path, args.dst, progress=bar)
        print(local)
    else:
        deleted = client.delete_artifacts(args.run_id, args.path)
        print(f"deleted {deleted} file{'' if deleted == 1 else 's'}")


def _bar(args: argparse.Namespace, label: str) -> AbstractContextManager[ProgressBar | None]:
    """A progress bar on stderr when asked for or stderr is a terminal; closed on the way
    out."""
    if not (args.progress or sys.stderr.isatty()):
        return nullcontext(None)
    return ProgressBar(label)


def _print_files(
    client: TracklineClient, run_id: str, path: str, recursive: bool, as_json: bool
) -> None:
    files = client.list_artifacts(run_id, path, recursive)
    if as_json:
        print(json.dumps([f._asdict() for f in files], indent=2, ensure_ascii=False))
        return
    rows = (
        [
            f.path + ("/" if f.is_dir else ""),
            "-" if f.file_size is None else str(f.file_size),
            f.sha256 or "-",
        ]
        for f in files
    )
    print_table(["PATH", "SIZE", "SHA256"], rows, "no artifacts found")
