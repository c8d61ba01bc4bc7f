"""`pipeline db migrate`: create or upgrade the tables ahead of a deployment."""

from __future__ import annotations

import click

from ..settings import Settings
from ..store import Store
from ..store.db import redact
from .options import db_options


@click.group()
def db() -> None:
    """The database: migrate it ahead of a deployment."""


@db.command()
@db_options
def migrate(db: str | None, db_schema: str | None) -> None:
    """Create or upgrade the tables (numbered migrations, each applied once)."""
    settings = Settings.from_env(db=db, db_schema=db_schema)
    with Store(settings.db, schema=settings.db_schema) as store:
        applied = store.migrated
    where = redact(settings.db) + (f" (schema {settings.db_schema})" if settings.db_schema else "")
    if applied:
        click.echo(f"{where}: applied migration(s) {', '.join(map(str, applied))}")
    else:
        click.echo(f"{where}: up to date")
