from __future__ import annotations

import asyncio

import pytest

from runner import load_pipeline
from runner.errors import InputError
from runner.fake.server import mock_transport
from runner.settings import Settings

from .conftest import EXAMPLES, TEST_KEY, cost_rows


def test_design_api_runs_one_record(fake, settings, db_path):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    result = asyncio.run(
        pipeline.run({"ticket": "The app crashes"}, user_id="42", settings=settings, transport=mock_transport(fake))
    )
    assert result.status == "ok"
    assert result.output["label"] == result.steps["classify"].output
    assert result.cost_usd == pytest.approx(sum(row["cost_usd"] for row in cost_rows(db_path)))
    assert {body["user"] for body in fake.chat_bodies()} == {"42"}


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("PIPELINE_DB", "/tmp/some.db")
    monkeypatch.setenv("PIPELINE_APP_URL", "https://app.example")
    settings = Settings.from_env()
    assert (settings.api_key, settings.base_url, settings.db, settings.app_url) == (
        TEST_KEY,
        "http://127.0.0.1:9/api/v1",
        "/tmp/some.db",
        "https://app.example",
    )
    assert TEST_KEY not in repr(settings)


def test_invalid_record_is_refused_before_any_call(fake, settings):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    with pytest.raises(InputError, match="ticket"):
        asyncio.run(pipeline.run({"text": "wrong field"}, settings=settings, transport=mock_transport(fake)))
    assert fake.chat_requests == 0


def test_without_a_database_nothing_is_written(fake, settings, db_path):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    no_db = Settings(api_key=TEST_KEY, base_url=settings.base_url, db=None, models_cache=False)
    result = asyncio.run(pipeline.run({"ticket": "hi"}, settings=no_db, transport=mock_transport(fake)))
    assert result.status == "ok" and not db_path.exists()
