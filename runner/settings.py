"""What a run takes from outside: `Settings` (where it connects, the key, the database; read from the
environment by `Settings.from_env`) and `RunOptions` (how it behaves)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .chat.client import DEFAULT_BASE_URL, OpenRouterClient
from .errors import ConfigurationError
from .store.db import redact
from .store.store import DEFAULT_DB


@dataclass(frozen=True)
class Settings:
    """Everything a run takes from outside; `from_env` reads the variables of DESIGN.md §3."""

    api_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    db: str | None = DEFAULT_DB  # a SQLite path or a postgresql:// URL; None: record nothing
    db_schema: str | None = None  # PostgreSQL: keep the tables in this schema
    app_url: str | None = None
    app_name: str | None = None
    models_cache: bool = True
    cache_dir: str | None = None  # where the model catalogue is cached; None: ~/.cache/pipeline
    mock: bool = False  # base_url is the built-in fake (--mock): its replies and costs are not real
    max_connections: int = 100
    backoff_base_s: float = 0.5  # transport retries wait ~base * 2**n with full jitter, capped
    backoff_max_s: float = 30.0
    generation_wait_s: float = 10.0  # how long GET /generation is retried for a reply without usage.cost
    batch_url: str | None = None  # the Batch API (OPENROUTER_BATCH_URL); None: `batches` under base_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        settings = cls(
            api_key=environ.get("OPENROUTER_API_KEY") or None,
            base_url=environ.get("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL,
            db=environ.get("PIPELINE_DB") or DEFAULT_DB,
            db_schema=environ.get("PIPELINE_DB_SCHEMA") or None,
            app_url=environ.get("PIPELINE_APP_URL") or None,
            app_name=environ.get("PIPELINE_APP_NAME") or None,
            cache_dir=environ.get("PIPELINE_CACHE_DIR") or None,
            batch_url=environ.get("OPENROUTER_BATCH_URL") or None,
        )
        _check_header_values(settings)
        return replace(settings, **{key: value for key, value in overrides.items() if value is not None})

    def __repr__(self) -> str:  # the key never shows up in a traceback or a log line
        db = redact(self.db) if self.db else None
        return f"Settings(base_url={self.base_url!r}, db={db!r}, api_key={'set' if self.api_key else 'unset'})"

    def generation_client(self, pause, transport=None) -> OpenRouterClient:
        """A client of its own for `GET /generation` lookups (`--fetch-generations`, `pipeline enrich`): its
        waits go through `pause`, so they give their slot back (GenerationFetcher.pause)."""
        return OpenRouterClient(
            api_key=self.api_key,
            base_url=self.base_url,
            transport=transport,
            app_url=self.app_url,
            app_name=self.app_name,
            sleep=pause,
            generation_wait_s=self.generation_wait_s,
        )


def _check_header_values(settings: Settings) -> None:
    """Values sent as HTTP headers must be printable ASCII; say which variable is wrong (never the key itself)."""
    key = settings.api_key
    if key is not None and not (key.isascii() and key.isprintable() and " " not in key):
        raise ConfigurationError(
            "OPENROUTER_API_KEY contains a space, a line break or another character an API key cannot have "
            "(often a trailing newline from a file or a copy): set it to the key alone"
        )
    for variable, value in (("PIPELINE_APP_URL", settings.app_url), ("PIPELINE_APP_NAME", settings.app_name)):
        if value is not None and not (value.isascii() and value.isprintable() and value == value.strip()):
            raise ConfigurationError(f"{variable} is sent as an HTTP header and must be printable ASCII, not {value!r}")


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves, beyond where it connects (Settings)."""

    concurrency: int = 16  # model requests in flight across the whole run
    use_cache: bool = True  # serve repeated requests from the response cache (replies are stored either way)
    max_cost_usd: float | None = None  # hard cap on the run's total `usage.cost`
    resume: bool = False  # the run id names an earlier run to finish
    retry_failed: bool = False  # resuming: run the records that failed again (else they stay as they were)
    stream: bool = False  # text steps stream their replies: hooks get each piece (`on_text_delta`)
    files_root: str | None = None  # local attachments are read only from below it; None: the current folder
    max_attachment_mb: float = 20.0  # a larger attachment fails its record
    batch_api: bool = False  # --batch-api: batchable chat requests go through OpenRouter's Batch API
    batch_size: int = 1_000  # a batch is submitted at this many requests (at most 5,000) ...
    batch_linger_s: float = 5.0  # ... or when no request joined it for this long
    batch_poll_s: float = 10.0  # the first wait before polling a batch; it grows to batch_poll_max_s
    batch_poll_max_s: float = 60.0
    fetch_generations: bool = False  # look up each billed reply's GET /generation record in the background
    # runner.cluster (--executor ray): where records run, and a worker's part in the run
    executor: str = "local"  # "local": this event loop; "ray": blocks of records on a Ray cluster
    ray_address: str | None = None  # an existing cluster (ray.init(address=...)); None: start a local one
    workers: int | None = None  # Ray: blocks of records in flight at once; None: the cluster's CPUs
    block_size: int | None = None  # Ray: records per block; None: from the concurrency
    joined: bool = False  # a Ray worker in the driver's run: never starts or finishes it, skips finished records
