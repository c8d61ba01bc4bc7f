"""A base URL where nothing listens, or one that is not OpenRouter's API: one clear stop (exit 3), no retries."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from aiohttp import web

from runner.chat.client import OpenRouterClient
from runner.errors import ConfigurationError

from .conftest import ROOT, TEST_KEY, invoke

CHAIN = ROOT / "bench" / "pipelines" / "chain3.yaml"
NOT_FOUND_PAGE = "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on leaving: nothing listens there


class NotOpenRouter:
    """A web server answering every request with an HTML 404 page; counts what it was asked."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/api/v1"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, self._socket).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> NotOpenRouter:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def run_three_records(capsys, monkeypatch, tmp_path, base_url: str):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"text": f"record {n}"}) + "\n" for n in range(3)), encoding="utf-8")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", base_url)
    output = tmp_path / "out.jsonl"
    result = invoke(capsys, monkeypatch, "-v", "run", str(CHAIN), "--inputs", str(data), "--output", str(output))
    return result, output


def test_nothing_listening_stops_the_run_once_with_the_cause(capsys, monkeypatch, tmp_path):
    result, output = run_three_records(capsys, monkeypatch, tmp_path, f"http://127.0.0.1:{closed_port()}/api/v1")
    assert result.code == 3, result.err
    assert "connection refused" in result.err and "OPENROUTER_BASE_URL" in result.err
    assert "timed out" not in result.err and "retrying" not in result.err  # -v would show every retry
    assert not output.exists() or output.read_text() == ""  # no record was tried
    assert TEST_KEY not in result.err


def test_a_server_that_is_not_openrouter_stops_the_run_after_one_request(capsys, monkeypatch, tmp_path):
    with NotOpenRouter() as server:
        result, _ = run_three_records(capsys, monkeypatch, tmp_path, server.base_url)
    assert result.code == 3, result.err
    assert "HTTP 404 from a server that is not an OpenRouter API" in result.err and "<!DOCTYPE html>" in result.err
    assert server.requests == ["GET /api/v1/models"]


def test_a_chat_404_without_openrouters_error_body_is_a_configuration_stop():
    with NotOpenRouter() as server:

        async def chat():
            async with OpenRouterClient(api_key=TEST_KEY, base_url=server.base_url) as client:
                await client.chat({"model": "m", "messages": []}, timeout_s=5, retries=3)

        with pytest.raises(ConfigurationError, match="not an OpenRouter API"):
            asyncio.run(chat())
    assert server.requests == ["POST /api/v1/chat/completions"]  # not retried, no other model tried
