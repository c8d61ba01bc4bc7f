"""Cassettes for `pipeline test`: record every exchange once, replay it offline and deterministically.

A cassette is a JSON file beside the cases file. Chat requests are keyed like the response
cache (the body as sent, without the user id); the API key and headers are never stored.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..chat.catalog import SNAPSHOT_PATH
from ..chat.request import encode_body
from ..errors import CassetteMiss, UsageError

VERSION = 1


def cassette_path(cases_path: str | Path) -> Path:
    path = Path(cases_path)
    return path.with_name(path.name.split(".")[0] + ".cassette.json")


@dataclass
class Cassette:
    path: Path
    chats: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    models: Any = None
    served: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # replays so far, per key

    @classmethod
    def load(cls, path: Path) -> Cassette:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            cassette = cls(path)
            for interaction in document.get("chat", []):
                cassette.chats[interaction["key"]].append(interaction)
            cassette.models = document.get("models")
        except (ValueError, AttributeError, KeyError, TypeError) as exc:  # not the shape `save` writes
            raise UsageError(
                f"{path}: not a cassette this runner wrote ({exc}); record it again with `pipeline test --record`"
            ) from None
        return cassette

    def save(self) -> None:
        interactions = [item for key in sorted(self.chats) for item in self.chats[key]]
        document = {"version": VERSION, "models": self.models, "chat": interactions}
        self.path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _chat_key(request: httpx.Request) -> tuple[str, dict[str, Any]]:
    body = json.loads(request.content)
    return encode_body(body)[0], body


def _replayed(status: int, body: Any, request: httpx.Request, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, json=body, headers=headers, request=request)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes every request through and writes what came back into the cassette."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cassette: Cassette) -> None:
        self._inner = inner
        self._cassette = cassette

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        try:
            payload = json.loads(content) if content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = content.decode("utf-8", "replace")
        path = request.url.path.rstrip("/")
        if path.endswith("/chat/completions"):
            key, body = _chat_key(request)
            self._cassette.chats[key].append(
                {
                    "key": key,
                    "request": body,
                    "status": response.status_code,
                    "retry_after": response.headers.get("retry-after"),
                    "response": payload,
                }
            )
        elif path.endswith("/models") and response.status_code == 200:
            self._cassette.models = payload
        headers = {name: value for name, value in response.headers.items() if name.lower() == "retry-after"}
        return httpx.Response(response.status_code, content=content, headers=headers, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class ReplayTransport(httpx.AsyncBaseTransport):
    """Answers from the cassette only; a request it does not hold raises CassetteMiss."""

    def __init__(self, cassette: Cassette) -> None:
        self._cassette = cassette

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if path.endswith("/models"):
            models = self._cassette.models or json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))
            return _replayed(200, models, request)
        if not path.endswith("/chat/completions"):
            return _replayed(404, {"error": {"code": 404, "message": "not in the cassette"}}, request)
        key, body = _chat_key(request)
        recorded = self._cassette.chats.get(key)
        if not recorded:
            prompt = next(
                (m.get("content", "") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), ""
            )
            raise CassetteMiss(
                f"a request to {body.get('model')} (prompt starting {str(prompt)[:60]!r}) is not in the cassette "
                f"{self._cassette.path.name}: the prompt, the settings or an earlier step's output changed since it "
                "was recorded; re-record with `pipeline test ... --record`",
                model=body.get("model"),
                cassette=self._cassette.path.name,
            )
        index = self._cassette.served[key]
        self._cassette.served[key] = index + 1
        interaction = recorded[min(index, len(recorded) - 1)]  # repeats reuse the last recording
        return _replayed(interaction["status"], interaction["response"], request, interaction.get("retry_after"))
