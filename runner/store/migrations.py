"""Numbered schema migrations: an append-only list, each applied once and recorded."""

from __future__ import annotations

from collections.abc import Callable

from ..outcomes import Outcome
from ..run.results import utc_now
from .db import Database


def sql_list(words: type[Outcome]) -> str:
    """An enum's values as SQL literals, for a CHECK: `'ok', 'invalid_json', ...`.

    m001 lists every Outcome: a new member needs a new migration that widens the CHECK, and m001
    must then keep listing the six it was written with (tests/test_outcomes.py pins them).
    """
    return ", ".join(f"'{word}'" for word in words)


def m001_initial(db: Database) -> None:
    real = db.dialect.real
    db.execute(
        f"""
        CREATE TABLE cost_records (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            record_key TEXT NOT NULL,
            step TEXT NOT NULL,
            module TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            model TEXT NOT NULL,
            provider TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd {real} NOT NULL DEFAULT 0,
            user_id TEXT,
            attempt INTEGER NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN
                ({sql_list(Outcome)})),
            cached INTEGER NOT NULL DEFAULT 0 CHECK (cached IN (0, 1)),
            latency_ms INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX cost_records_run ON cost_records (run_id)")
    db.execute("CREATE INDEX cost_records_created ON cost_records (created_at)")
    db.execute(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            pipeline_path TEXT NOT NULL,
            user_id TEXT,
            status TEXT NOT NULL,
            records_ok INTEGER NOT NULL DEFAULT 0,
            records_failed INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )
        """
    )
    db.execute(
        f"""
        CREATE TABLE step_results (
            run_id TEXT NOT NULL,
            record_key TEXT NOT NULL,
            step TEXT NOT NULL,
            status TEXT NOT NULL,
            output_json TEXT,
            model TEXT,
            cost_usd {real} NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            reasoning TEXT,
            latency_ms INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, record_key, step)
        )
        """
    )
    db.execute(
        f"""
        CREATE TABLE records (
            run_id TEXT NOT NULL,
            record_key TEXT NOT NULL,
            status TEXT NOT NULL,
            output_json TEXT,
            error_json TEXT,
            cost_usd {real} NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, record_key)
        )
        """
    )


def m002_response_cache(db: Database) -> None:
    """Replies keyed by a hash of the canonical request body, so a re-run never pays twice."""
    db.execute(
        """
        CREATE TABLE response_cache (
            key TEXT PRIMARY KEY,
            generation_id TEXT NOT NULL,
            model TEXT NOT NULL,
            reply_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )


def m003_budgets(db: Database) -> None:
    """The --max-cost of a run, shared by every worker on it: reservations are atomic updates here."""
    real = db.dialect.real
    db.execute(
        f"""
        CREATE TABLE budgets (
            run_id TEXT PRIMARY KEY,
            max_cost_usd {real} NOT NULL,
            spent_usd {real} NOT NULL DEFAULT 0,
            reserved_usd {real} NOT NULL DEFAULT 0
        )
        """
    )


def m004_cost_sources(db: Database) -> None:
    """Where each cost came from, BYOK and provider-billed spend, duplicates kept, and looked-up generations."""
    real = db.dialect.real
    for column in (
        "cache_write_tokens INTEGER NOT NULL DEFAULT 0",
        "is_byok INTEGER NOT NULL DEFAULT 0 CHECK (is_byok IN (0, 1))",
        f"upstream_cost_usd {real}",
        "cost_source TEXT NOT NULL DEFAULT 'usage' CHECK (cost_source IN ('usage', 'generation', 'batch', 'estimate'))",
        "native_finish_reason TEXT",
        "duplicate_of TEXT",  # a second row OpenRouter billed under an id already recorded: kept, never dropped
    ):
        db.execute(f"ALTER TABLE cost_records ADD COLUMN {column}")
    db.execute(
        f"""
        CREATE TABLE generations (
            id TEXT PRIMARY KEY,
            latency_ms INTEGER,
            generation_time_ms INTEGER,
            provider_name TEXT,
            provider_responses TEXT,
            native_tokens_prompt INTEGER,
            native_tokens_completion INTEGER,
            native_tokens_reasoning INTEGER,
            native_tokens_cached INTEGER,
            cache_discount {real},
            upstream_cost_usd {real},
            total_cost_usd {real},
            is_byok INTEGER NOT NULL DEFAULT 0 CHECK (is_byok IN (0, 1)),
            finish_reason TEXT,
            native_finish_reason TEXT,
            fetched_at TEXT NOT NULL
        )
        """
    )


def m005_endpoints_and_run_processes(db: Database) -> None:
    """The response cache is keyed by the endpoint that answered, so a --mock reply is never served to a
    live run; runs say whether they were --mock runs and which process (pid, host) runs them, so a killed
    run can be told from a running one.

    Entries written before have no label: the fake's (its `[mock reply from` text or its `gen-...-fake...`
    ids) become `mock`, the others OpenRouter's, where real replies came from. Runs whose every cost row
    is the fake's become mock runs.
    """
    db.execute("ALTER TABLE runs ADD COLUMN mock INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")
    db.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    fake_id, fake_cached_id = "gen-%-fake%", "cached-%-gen-%-fake%"  # parameters: % is psycopg's placeholder
    db.execute(
        "UPDATE runs SET mock = 1 WHERE id IN (SELECT run_id FROM cost_records GROUP BY run_id"
        " HAVING SUM(CASE WHEN id LIKE ? OR id LIKE ? THEN 0 ELSE 1 END) = 0)",
        (fake_id, fake_cached_id),
    )
    db.execute(
        """
        CREATE TABLE response_cache_m005 (
            endpoint TEXT NOT NULL,
            key TEXT NOT NULL,
            generation_id TEXT NOT NULL,
            model TEXT NOT NULL,
            reply_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (endpoint, key)
        )
        """
    )
    db.execute(
        "INSERT INTO response_cache_m005 (endpoint, key, generation_id, model, reply_json, created_at)"
        " SELECT CASE WHEN generation_id LIKE ? OR reply_json LIKE ? THEN 'mock' ELSE ? END,"
        " key, generation_id, model, reply_json, created_at FROM response_cache",
        (fake_id, '%"content": "[mock reply from%', _OPENROUTER_URL),
    )
    db.execute("DROP TABLE response_cache")
    db.execute("ALTER TABLE response_cache_m005 RENAME TO response_cache")
    db.execute("CREATE INDEX response_cache_created ON response_cache (created_at)")


_OPENROUTER_URL = "https://openrouter.ai/api/v1"  # as of migration 5, whatever the default becomes later


def m006_record_fingerprints(db: Database) -> None:
    """A hash of each record's content, so that --resume never serves an old answer to an edited record."""
    db.execute("ALTER TABLE records ADD COLUMN fingerprint TEXT")


def m007_elements_rounds_batches(db: Database) -> None:
    """Which element of a `for_each` step, which tool-calling round and which Batch API batch a cost row is."""
    for column in ("item_index INTEGER", "round INTEGER", "batch_id TEXT"):
        db.execute(f"ALTER TABLE cost_records ADD COLUMN {column}")


def m008_batches(db: Database) -> None:
    """--batch-api: each batch (stored before it is submitted; OpenRouter's id once accepted; its outcome,
    its bill and what the same tokens cost through the normal API) and each request it carried."""
    real = db.dialect.real
    db.execute(
        f"""
        CREATE TABLE batches (
            local_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            batch_id TEXT,
            step TEXT NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            requests INTEGER NOT NULL,
            error_message TEXT,
            billed_usd {real},
            normal_usd {real},
            created_at TEXT NOT NULL,
            submitted_at TEXT,
            finished_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX batches_run ON batches (run_id)")
    db.execute(
        """
        CREATE TABLE batch_requests (
            local_id TEXT NOT NULL,
            custom_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            request_key TEXT NOT NULL,
            record_key TEXT NOT NULL,
            body_key TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            body_json TEXT NOT NULL,
            PRIMARY KEY (local_id, custom_id)
        )
        """
    )


MIGRATIONS: tuple[tuple[int, Callable[[Database], None]], ...] = (
    (1, m001_initial),
    (2, m002_response_cache),
    (3, m003_budgets),
    (4, m004_cost_sources),
    (5, m005_endpoints_and_run_processes),
    (6, m006_record_fingerprints),
    (7, m007_elements_rounds_batches),
    (8, m008_batches),
)


def migrate(db: Database) -> list[int]:
    """Apply the migrations this database has not seen, under a lock; returns the ones applied."""
    done = []
    with db.migration_lock():
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in _applied(db)}  # another process may have migrated while we waited
        for version, function in MIGRATIONS:
            if version in applied:
                continue
            function(db)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, function.__name__, utc_now()),
            )
            done.append(version)
    return done


def _applied(db: Database) -> list[tuple]:
    return [(row["version"],) for row in db.query("SELECT version FROM schema_migrations")]
