"""Schema migrations (Alembic). ``Database.create_schema`` runs ``upgrade`` at start-up.

The scripts live in the ``migrations`` package next to this module and ship with the wheel;
there is no alembic.ini: ``make_config`` builds the configuration in code.

Adding a migration (development):

1. Change the tables in ``models.py``.
2. Bring a scratch SQLite database to the current head, then autogenerate against it::

       export TRACKLINE_STORE_URI=sqlite+aiosqlite:///scratch.db
       .venv/bin/python -m trackline_server.migrate upgrade head
       .venv/bin/python -m trackline_server.migrate revision --autogenerate -m "add x"

   This writes ``migrations/versions/NNNN_add_x.py`` with the next revision id (0002, ...),
   formatted by ruff. SQLite operations come out in batch mode (table copies), which also
   run as plain ALTERs on PostgreSQL.
3. Read the script: autogenerate does not see renames (it drops and adds) or data that has
   to move, and names nothing it cannot see. Check the downgrade too. Then run
   ``tests/integration/test_migrations.py``, which checks that the upgraded schema matches
   ``models.py`` on SQLite and PostgreSQL.

The other Alembic commands work the same way (``current``, ``history``, ``downgrade -1``,
``upgrade head --sql``); ``--store-uri`` overrides TRACKLINE_STORE_URI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import CommandLine, Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = Path(__file__).parent / "migrations"

# The revision whose schema builds from before migrations made with metadata.create_all.
BASELINE = "0001"

# Any fixed number: the key of the PostgreSQL advisory lock that serialises migrations.
_PG_LOCK_KEY = int.from_bytes(b"trackln!", "big")


def make_config() -> Config:
    cfg = Config()
    # The value goes through configparser interpolation: a "%" in the path must be doubled.
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


async def upgrade(engine: AsyncEngine) -> None:
    """Brings the database to the newest revision, in one transaction."""
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade)


def _upgrade(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        with conn.begin():
            _upgrade_in_transaction(conn)
        return
    # A batch operation copies the table and drops the old one; with foreign keys enforced,
    # dropping a table that other rows reference fails. SQLite's own recipe for such changes:
    # foreign keys off (a no-op inside a transaction, so before the "begin" hook's BEGIN
    # IMMEDIATE), migrate, verify the references before committing, foreign keys back on.
    _sqlite_pragma(conn, "foreign_keys=OFF")
    try:
        with conn.begin():
            _upgrade_in_transaction(conn)
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
            if broken is not None:
                raise RuntimeError(f"migration left a dangling foreign key: {tuple(broken)}")
    finally:
        if not conn.invalidated:
            _sqlite_pragma(conn, "foreign_keys=ON")


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    # Straight to the driver: through SQLAlchemy, the statement would begin a transaction.
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _upgrade_in_transaction(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # Servers starting together on one database migrate one after the other.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    cfg = make_config()
    cfg.attributes["connection"] = conn
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and "experiments" in tables:
        # Made by a build from before migrations (metadata.create_all, no alembic_version):
        # its tables are those of the baseline revision, so record that instead of creating
        # them again; the revisions after the baseline then apply as usual.
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, "head")


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None when it has none (empty, or made by create_all)."""

    def read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


def head_revision() -> str:
    head = ScriptDirectory.from_config(make_config()).get_current_head()
    assert head is not None
    return head


def _next_revision_id(cfg: Config) -> str:
    revisions = ScriptDirectory.from_config(cfg).walk_revisions()
    return f"{max((int(r.revision) for r in revisions if r.revision.isdigit()), default=0) + 1:04d}"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m trackline_server.migrate``: Alembic's command line over this configuration."""
    cli = CommandLine(prog="python -m trackline_server.migrate")
    cli.parser.add_argument(
        "--store-uri",
        default=os.environ.get("TRACKLINE_STORE_URI", "sqlite+aiosqlite:///trackline.db"),
        help="SQLAlchemy URL of the database (env TRACKLINE_STORE_URI)",
    )
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cfg = make_config()
    cfg.cmd_opts = options
    cfg.attributes["store_uri"] = options.store_uri
    # New scripts get sequential ids and the repository's formatting.
    if options.cmd[0] is command.revision and options.rev_id is None:
        options.rev_id = _next_revision_id(cfg)
    hooks = {"ruff_format": "format --quiet", "ruff_fix": "check --fix --quiet"}
    cfg.set_section_option("post_write_hooks", "hooks", ", ".join(hooks))
    for name, args in hooks.items():
        cfg.set_section_option("post_write_hooks", f"{name}.type", "module")
        cfg.set_section_option("post_write_hooks", f"{name}.module", "ruff")
        cfg.set_section_option(
            "post_write_hooks", f"{name}.options", f"{args} REVISION_SCRIPT_FILENAME"
        )
    cli.run_cmd(cfg, options)


if __name__ == "__main__":
    main()
