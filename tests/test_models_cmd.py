"""`pipeline models`: the catalogue offline (bundled snapshot, disk cache) and live (the fake on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import socket

import httpx

from runner.chat.catalog import cache_path_for, load_catalog
from runner.chat.client import OpenRouterClient
from runner.fake import FakeOpenRouter
from runner.fake.server import FakeServer

from .conftest import TEST_KEY, invoke

ACME = {
    "id": "acme/listen-1",
    "name": "Acme: Listen One",
    "context_length": 8192,
    "architecture": {"input_modalities": ["text", "audio"], "output_modalities": ["text"]},
    "pricing": {"prompt": "0.000002", "completion": "0.000008", "request": "0", "image": "0"},
    "top_provider": {"context_length": 8192, "max_completion_tokens": 2048},
    "supported_parameters": ["max_tokens", "reasoning", "temperature"],
}


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1"


def test_without_a_key_it_lists_the_bundled_catalogue_and_says_so(capsys, monkeypatch):
    result = invoke(capsys, monkeypatch, "models", "--format", "json")
    assert result.code == 0, result.err
    rows = {row["id"]: row for row in json.loads(result.out)}
    assert len(rows) == 9 and list(rows) == sorted(rows)
    assert rows["google/gemini-2.5-flash-lite"] == {
        "id": "google/gemini-2.5-flash-lite",
        "context_length": 1048576,
        "prompt_usd_per_1m": 0.1,
        "completion_usd_per_1m": 0.4,
        "structured_outputs": True,
        "reasoning": True,
        "input_modalities": ["text", "image", "file", "audio", "video"],
    }
    assert rows["openai/gpt-4o-mini"]["reasoning"] is False
    assert rows["mistralai/mistral-7b-instruct"]["structured_outputs"] is False
    assert "9 of 9 models, from the snapshot bundled with the runner" in result.err
    assert "set OPENROUTER_API_KEY" in result.err


def test_search_ignores_case_and_matches_the_name_too(capsys, monkeypatch):
    by_id = invoke(capsys, monkeypatch, "models", "--search", "GEMINI", "--format", "json")
    assert [row["id"] for row in json.loads(by_id.out)] == [
        "google/gemini-2.5-flash",
        "google/gemini-2.5-flash-lite",
        "google/gemini-2.5-pro",
    ]
    # "Meta: Llama 3.1 8B Instruct": only the name has ": "
    by_name = invoke(capsys, monkeypatch, "models", "--search", "meta: llama", "--format", "json")
    assert [row["id"] for row in json.loads(by_name.out)] == ["meta-llama/llama-3.1-8b-instruct"]

    nothing = invoke(capsys, monkeypatch, "models", "--search", "no-such-model")
    assert nothing.code == 0
    assert "no model's id or name contains 'no-such-model'" in nothing.out
    assert "0 of 9 models" in nothing.err


def test_table_and_csv_say_yes_or_no_and_join_the_modalities(capsys, monkeypatch):
    table = invoke(capsys, monkeypatch, "models", "--search", "gpt-4o-mini")
    header, rule, line = table.out.splitlines()
    assert header.split() == [
        "id",
        "context_length",
        "prompt_usd_per_1m",
        "completion_usd_per_1m",
        "structured_outputs",
        "reasoning",
        "input_modalities",
    ]
    assert set(rule) <= {"-", " "}
    assert line.split() == ["openai/gpt-4o-mini", "128000", "0.15", "0.6", "yes", "no", "text,image,file"]

    exported = invoke(capsys, monkeypatch, "models", "--search", "claude", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported.out)))
    assert [row["id"] for row in rows] == ["anthropic/claude-haiku-4.5", "anthropic/claude-sonnet-4.5"]
    assert rows[1]["input_modalities"] == "text,image,file"
    assert rows[1]["completion_usd_per_1m"] == "15.0"
    assert {row["structured_outputs"] for row in rows} == {"yes"}


def test_with_a_key_it_lists_the_live_catalogue_then_serves_it_from_the_disk_cache(capsys, monkeypatch):
    with FakeServer(FakeOpenRouter(models=[ACME])) as server:
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        live = invoke(capsys, monkeypatch, "models", "--format", "json")
        assert live.code == 0, live.err
        assert json.loads(live.out) == [
            {
                "id": "acme/listen-1",
                "context_length": 8192,
                "prompt_usd_per_1m": 2.0,
                "completion_usd_per_1m": 8.0,
                "structured_outputs": False,
                "reasoning": True,
                "input_modalities": ["text", "audio"],
            }
        ]
        assert f"1 of 1 models, from {server.base_url.rstrip('/')}/models" in live.err
        assert [seen.path for seen in server.fake.history] == ["models"]
        assert TEST_KEY not in live.out + live.err

        monkeypatch.delenv("OPENROUTER_API_KEY")
        offline = invoke(capsys, monkeypatch, "models", "--search", "ACME")
        assert offline.out.splitlines()[2].split()[0] == "acme/listen-1"
        assert "from the disk cache of" in offline.err
        assert len(server.fake.history) == 1  # no second request: offline means offline


def test_an_unreachable_endpoint_falls_back_to_the_bundled_snapshot(capsys, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", _closed_port_url())
    result = invoke(capsys, monkeypatch, "models", "--format", "json")
    assert result.code == 0, result.err
    assert len(json.loads(result.out)) == 9
    assert "could not fetch the model catalogue" in result.err
    assert "from the snapshot bundled with the runner" in result.err


def test_mock_lists_the_fakes_catalogue_without_touching_the_network(capsys, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", _closed_port_url())
    result = invoke(capsys, monkeypatch, "models", "--mock", "--search", "flash-lite", "--format", "json")
    assert result.code == 0, result.err
    assert [row["id"] for row in json.loads(result.out)] == ["google/gemini-2.5-flash-lite"]
    assert "could not fetch" not in result.err
    assert "OPENROUTER_API_KEY" not in result.err


def test_a_failing_models_endpoint_serves_a_stale_disk_cache_before_the_bundled_snapshot(tmp_path):
    base_url = "https://openrouter.test/api/v1"
    cache = cache_path_for(base_url, str(tmp_path))
    cache.write_text(json.dumps({"data": [ACME]}), encoding="utf-8")
    stamp = cache.stat().st_mtime - 30 * 24 * 3600  # long past the 24-hour TTL
    os.utime(cache, (stamp, stamp))
    outage = httpx.MockTransport(lambda request: httpx.Response(503, json={"error": {"code": 503, "message": "down"}}))

    async def fetch():
        async with OpenRouterClient(api_key=TEST_KEY, base_url=base_url, transport=outage) as client:
            return await load_catalog(client, cache)

    catalog = asyncio.run(fetch())
    assert list(catalog.models) == ["acme/listen-1"]
    assert catalog.source == "cache"
