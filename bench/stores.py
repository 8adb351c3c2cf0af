"""The stores a benchmark measures: SQLite always, PostgreSQL when given a test cluster's
URL (each store a fresh database), and the command line of a benchmark run over them."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tests.support import databases

StoreMaker = Callable[[], str | None]  # a fresh store's URL; None: a SQLite file of the server's


def stores(pg_url: str) -> list[tuple[str, StoreMaker]]:
    """(label, maker) of each store to measure."""
    found: list[tuple[str, StoreMaker]] = [("SQLite", lambda: None)]
    if pg_url:
        databases.PG_URL = pg_url  # fresh_postgres_database() creates databases there
        found.append(("PostgreSQL", databases.fresh_postgres_database))
    return found


def run_on_stores(doc: str, bench_store: Callable[[str, StoreMaker, float], None]) -> None:
    """Parses ``--seconds`` (per figure) and ``--pg-url``, runs ``bench_store`` on each store,
    and drops the PostgreSQL databases it made."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--pg-url", default="", help="postgresql+asyncpg:// URL of a test cluster")
    args = parser.parse_args()
    try:
        for label, make_uri in stores(args.pg_url):
            bench_store(label, make_uri, args.seconds)
    finally:
        databases.drop_created_databases()
