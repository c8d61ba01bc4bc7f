"""Where a command's requests go: OpenRouter with the environment's key, or (--mock) the built-in fake
on 127.0.0.1 for the command's length. Shared by `pipeline run` and `pipeline test`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from ..errors import MissingAPIKey
from ..settings import Settings

MOCK_API_KEY = "mock-key-not-secret"


@contextlib.contextmanager
def connection(
    db: str | None, mock: bool, *, need_key: bool = True, db_schema: str | None = None
) -> Iterator[Settings]:
    """Settings from the environment; with --mock, a fake OpenRouter on 127.0.0.1 for the run's length."""
    settings = Settings.from_env(db=db, db_schema=db_schema)
    if not mock:
        if need_key and not settings.api_key:
            raise MissingAPIKey()
        yield settings
        return
    from ..fake import FakeOpenRouter
    from ..fake.server import FakeServer

    with FakeServer(FakeOpenRouter()) as server:
        yield replace(settings, api_key=MOCK_API_KEY, base_url=server.base_url, models_cache=False, mock=True)
