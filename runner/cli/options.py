"""Options and helpers several commands share: --db and --db-schema (declared once, for every command
that takes them), opening an existing database for the reporting commands, and `--since`-style
durations."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from ..errors import UsageError
from ..settings import Settings
from ..store import Store
from ..store.db import is_postgres


def db_options(command: Callable) -> Callable:
    """--db and --db-schema, with the same names and help on every command that takes them."""
    command = click.option(
        "--db-schema", metavar="NAME", help="PostgreSQL: keep the tables in this schema ($PIPELINE_DB_SCHEMA)."
    )(command)
    return click.option(
        "--db", metavar="PATH|URL", help="SQLite file path or postgresql:// URL (default: $PIPELINE_DB)."
    )(command)


def open_store(db: str | None, schema: str | None = None) -> Store:
    settings = Settings.from_env(db=db, db_schema=schema)
    if not is_postgres(settings.db) and not Path(settings.db).exists():
        raise UsageError(f"no database at {settings.db}: run a pipeline first, or point --db / PIPELINE_DB at one")
    return Store(settings.db, schema=settings.db_schema)


_DURATION = re.compile(r"^(?P<amount>\d+)(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_timestamp(since: str, now: datetime | None = None, *, option: str = "--since") -> str:
    """`7d`, `24h`, `30m` ago, or an ISO date, as the ISO-8601 UTC text stored in created_at."""
    match = _DURATION.match(since.strip())
    if match:
        moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        moment = datetime.fromisoformat(since.strip())
    except ValueError:
        raise UsageError(
            f"{option} {since!r}: use a duration such as 7d, 24h or 30m, or a date such as 2026-11-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def refuse_without(flag: str, given: bool, *options: str) -> None:
    """Options that only mean something with `flag` are refused when given without it, never silently ignored.
    `options` are click parameter names; one counts as given when it came from the command line or the environment."""
    if given:
        return
    context = click.get_current_context()
    for name in options:
        if context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} goes with {flag}; add {flag}, or drop {option}")
