"""Options and helpers several commands share: the database options of the reporting commands and
opening an existing database for them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from ..errors import UsageError
from ..settings import Settings
from ..store import Store
from ..store.db import is_postgres


def db_options(command: Callable) -> Callable:
    """--db and --db-schema, as the commands that read an existing database take them."""
    command = click.option(
        "--db-schema", metavar="NAME", help="PostgreSQL schema of the tables ($PIPELINE_DB_SCHEMA)."
    )(command)
    return click.option("--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: $PIPELINE_DB).")(
        command
    )


def open_store(db: str | None, schema: str | None = None) -> Store:
    settings = Settings.from_env(db=db, db_schema=schema)
    if not is_postgres(settings.db) and not Path(settings.db).exists():
        raise UsageError(f"no database at {settings.db}: run a pipeline first, or point --db / PIPELINE_DB at one")
    return Store(settings.db, schema=settings.db_schema)
