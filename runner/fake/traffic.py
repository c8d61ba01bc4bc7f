"""The fake OpenRouter with its chat traffic metered: how many chat requests were in flight at most
(the latency included), and when each one arrived. What a test of a cluster-wide cap or rate limit
measures, and the Ray benchmark's ceiling; `/_fake/stats` reports both counts."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .openrouter import FakeOpenRouter, FakeResponse


class MeteredOpenRouter(FakeOpenRouter):
    """FakeOpenRouter, counting `POST chat/completions` from arrival to reply."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.chat_in_flight = 0
        self.max_chat_in_flight = 0
        self.chat_arrivals: list[tuple[float, str | None]] = []  # (time.monotonic(), model) of each chat request

    async def handle(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], raw: bytes
    ) -> FakeResponse:
        if method != "POST" or not path.strip("/").endswith("chat/completions"):
            return await super().handle(method, path, query, headers, raw)
        self.chat_arrivals.append((time.monotonic(), _model(raw)))
        self.chat_in_flight += 1
        self.max_chat_in_flight = max(self.max_chat_in_flight, self.chat_in_flight)
        try:
            return await super().handle(method, path, query, headers, raw)
        finally:
            self.chat_in_flight -= 1

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "max_chat_in_flight": self.max_chat_in_flight}


def busiest_window(arrivals: list[float], seconds: float) -> int:
    """The most arrivals within any `seconds` (what a rate limit of that window allows)."""
    arrivals = sorted(arrivals)
    most, first = 0, 0
    for last, arrived in enumerate(arrivals):
        while arrived - arrivals[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def _model(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body.get("model") if isinstance(body, dict) else None
