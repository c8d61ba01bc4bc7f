"""The two database backends behind one small interface: SQLite (a file) and PostgreSQL (a URL).

Everything that differs between them lives here: connecting, placeholders (SQL is written
with `?`), column types, transactions, the migration lock and error types.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DatabaseUnavailable, StoreError

POSTGRES_PREFIXES = ("postgres://", "postgresql://")
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"pipeline-runner migrations").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Dialect:
    name: str
    real: str  # an 8-byte float column: SQLite REAL, PostgreSQL DOUBLE PRECISION


SQLITE = Dialect("sqlite", "REAL")
POSTGRES = Dialect("postgresql", "DOUBLE PRECISION")


def is_postgres(target: str) -> bool:
    return str(target).startswith(POSTGRES_PREFIXES)


def redact(target: str) -> str:
    """A database URL without its password, for messages."""
    text = str(target)
    if "@" in text and "://" in text:
        scheme, rest = text.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}" if ":" in credentials else text
    return text


class Database:
    """One connection. SQL uses `?` placeholders; rows come back as tuples or dicts."""

    dialect: Dialect
    label: str

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def one(self, sql: str, parameters: Sequence[Any] = ()) -> tuple | None:
        raise NotImplementedError

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the rows it changed."""
        raise NotImplementedError

    def transaction(self, batches: Mapping[str, list[tuple]]) -> dict[str, int]:
        """All rows of all statements, in one transaction (executemany per statement); rows changed by each."""
        raise NotImplementedError

    def migration_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while migrations run, so two processes starting together migrate once."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDatabase(Database):
    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.label = str(path)
        if self.path.is_dir():
            raise DatabaseUnavailable(f"cannot open the database {self.label}: it is a folder; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"cannot open the database {self.label}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            reason = "it is not a SQLite database" if "not a database" in str(exc) else str(exc)
            raise DatabaseUnavailable(f"cannot open the database {self.label}: {reason}") from None

    def query(self, sql, parameters=()):
        try:
            cursor = self._db.execute(sql, parameters)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the database {self.label}: {exc}") from None

    def one(self, sql, parameters=()):
        try:
            return self._db.execute(sql, parameters).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the database {self.label}: {exc}") from None

    def execute(self, sql, parameters=()):
        try:
            return self._db.execute(sql, parameters).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the database {self.label}: {exc}") from None

    def transaction(self, batches):
        try:
            self._db.execute("BEGIN")
            changed = {sql: self._db.executemany(sql, rows).rowcount for sql, rows in batches.items()}
            self._db.execute("COMMIT")
            return changed
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"cannot write to the database {self.label}: {exc}") from None

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot lock the database {self.label} to migrate it: {exc}") from None
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()


@lru_cache(maxsize=256)
def _postgres_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresDatabase(Database):
    dialect = POSTGRES

    def __init__(self, url: str, schema: str | None = None) -> None:
        import psycopg

        self._psycopg = psycopg
        self.label = redact(url)
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
            if schema:
                name = psycopg.sql.Identifier(schema)
                with self._db.transaction():  # IF NOT EXISTS still races between two processes: lock first
                    self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                    self._db.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
                self._db.execute(psycopg.sql.SQL("SET search_path TO {}").format(name))
        except psycopg.Error as exc:  # an unknown role or database, a refused connection: one line, exit 3
            raise DatabaseUnavailable(f"cannot open the database {self.label}: {_one_line(exc)}") from None

    def _fail(self, action: str, exc: Exception) -> StoreError:
        return StoreError(f"cannot {action} the database {self.label}: {_one_line(exc)}")

    def query(self, sql, parameters=()):
        try:
            cursor = self._db.execute(_postgres_sql(sql), parameters)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except self._psycopg.Error as exc:
            raise self._fail("read", exc) from None

    def one(self, sql, parameters=()):
        try:
            return self._db.execute(_postgres_sql(sql), parameters).fetchone()
        except self._psycopg.Error as exc:
            raise self._fail("read", exc) from None

    def execute(self, sql, parameters=()):
        try:
            return self._db.execute(_postgres_sql(sql), parameters).rowcount
        except self._psycopg.Error as exc:
            raise self._fail("write to", exc) from None

    def transaction(self, batches):
        try:
            changed = {}
            with self._db.transaction(), self._db.cursor() as cursor:
                for sql, rows in batches.items():
                    cursor.executemany(_postgres_sql(sql), rows)
                    changed[sql] = cursor.rowcount
            return changed
        except self._psycopg.Error as exc:
            raise self._fail("write to", exc) from None

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                yield
        except self._psycopg.Error as exc:
            raise self._fail("migrate", exc) from None

    def close(self) -> None:
        self._db.close()


def _one_line(exc: Exception) -> str:
    """psycopg's messages span lines and repeat `FATAL:`; a terminal wants one line."""
    return " ".join(str(exc).replace("FATAL:", "").split())


def open_database(target: str | Path, schema: str | None = None) -> Database:
    """A file path opens SQLite; a postgresql:// URL opens PostgreSQL (tables in `schema` when given)."""
    if is_postgres(str(target)):
        return PostgresDatabase(str(target), schema)
    return SQLiteDatabase(target)
