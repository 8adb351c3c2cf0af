"""``trackline tokens create|list|revoke`` and ``trackline whoami``: the server's access
tokens on the command line (an admin token's commands, but ``whoami``).

``tokens create`` prints the secret alone on stdout, so that ``$(trackline tokens create ...)``
captures it, and a note on stderr that it is shown this once; no other command prints a
secret. ``--expires`` takes a number and a unit: ``30d``, ``12h``, ``90m``, ``3600s``, or
``never`` (the default).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys

from ._cli_format import OneLineParser, escaped, print_fields, print_table
from ._client import TracklineClient
from ._tokens import TokenInfo

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"([0-9]{1,12})([dhms])")


def add_parsers(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    """Adds ``tokens`` with its subcommands, and ``whoami``, to the ``trackline`` command."""
    tokens = sub.add_parser("tokens", help="create, list and revoke access tokens (admin)")
    tokens_sub = tokens.add_subparsers(dest="sub", metavar="SUBCOMMAND", required=True)
    create = tokens_sub.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name", help="letters, digits, '-', '_', '.', '@'; at most 64")
    create.add_argument("--role", required=True, choices=["reader", "writer", "admin"])
    create.add_argument(
        "--experiments",
        type=_entries,
        default=(),
        help="only these experiments: ids, or name prefixes ending in '*' (comma-separated)",
    )
    create.add_argument(
        "--models",
        type=_entries,
        default=(),
        help="only these registered models: names, or prefixes ending in '*' (comma-separated)",
    )
    create.add_argument(
        "--expires",
        type=parse_expiry,
        default=None,
        help="when it expires: 30d, 12h, 90m, 3600s or never (default never)",
    )
    listing = tokens_sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="also list revoked tokens")
    tokens_sub.add_parser("revoke", help="revoke a token").add_argument("name")
    sub.add_parser("whoami", help="show the token this command calls with")


def dispatch(client: TracklineClient, args: argparse.Namespace) -> None:
    """Runs the ``tokens`` subcommand, or ``whoami``, that ``args`` names."""
    if args.cmd == "whoami":
        _show(client.whoami())
    elif args.sub == "create":
        created = client.create_token(
            args.name,
            args.role,
            experiments=args.experiments,
            models=args.models,
            expires_in=args.expires,
        )
        print(created.secret, flush=True)
        sys.stderr.write(
            f"trackline: created token {escaped(created.token.name)} ({created.token.role});"
            " its secret is shown this once\n"
        )
    elif args.sub == "list":
        _print_tokens(client.list_tokens(include_revoked=args.all))
    else:
        revoked = client.revoke_token(args.name)
        print(f"revoked token {escaped(revoked.name)} at {_when(revoked.revoked)}")


def parse_expiry(text: str) -> float | None:
    """Seconds from ``30d``, ``12h``, ``90m`` or ``3600s``; None for ``never``."""
    if text.strip().lower() == "never":
        return None
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30d, 12h, 90m or 3600s, or never, not {text!r:.80}"
        )
    return float(int(match.group(1)) * _UNITS[match.group(2)])


def _entries(text: str) -> tuple[str, ...]:
    """A comma-separated scope: its entries, stripped, the empty ones left out."""
    return tuple(e.strip() for e in text.split(",") if e.strip())


def _when(moment: dt.datetime | None) -> str:
    """Local time, to the second; "-" for none."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _scope(entries: tuple[str, ...]) -> str:
    return ",".join(entries) or "all"


def _print_tokens(found: list[TokenInfo]) -> None:
    rows = (
        [
            t.name,
            t.role,
            _scope(t.experiments),
            _scope(t.models),
            _when(t.created),
            _when(t.expires) if t.expires else "never",
            _when(t.revoked),
            t.created_by or "-",
        ]
        for t in found
    )
    header = ["NAME", "ROLE", "EXPERIMENTS", "MODELS", "CREATED", "EXPIRES", "REVOKED", "BY"]
    print_table(header, rows, "no tokens")


def _show(token: TokenInfo) -> None:
    print_fields(
        [
            ("name", token.name or "- (a server without tokens)"),
            ("role", token.role),
            ("experiments", _scope(token.experiments)),
            ("models", _scope(token.models)),
            ("expires", _when(token.expires) if token.expires else "never"),
        ]
    )
