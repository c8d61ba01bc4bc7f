"""OpenRouter's Batch API (`batch-quickstart.mdx`): the submission body, the batch object and its
results parsed into values, each result's failure classified like a sync reply's, and the two calls
(`POST /batches`, `GET /batches/{id}`) with their own retries.

The submission is spliced from the request bodies as already encoded (`request.encode_body`), with
`endpoint` and `model` written before `requests`: OpenRouter stream-parses it and answers 400 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    AuthenticationError,
    CallError,
    ConfigurationError,
    CreditsExhausted,
    NoEndpointsError,
    RequestRejected,
    RunStopped,
    TransientError,
)
from .client import RETRYABLE_STATUS
from .failures import TransportFailure
from .reply import Usage

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
SUBMIT_TIMEOUT_S = 120.0
POLL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BatchResult:
    """One request's result: a 200 reply body, or an error with its HTTP-like status."""

    custom_id: str
    status_code: int
    body: dict[str, Any] | None
    error_message: str | None = None


@dataclass(frozen=True)
class BatchState:
    """The batch object as `GET /batches/{id}` returns it."""

    id: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    usage: Usage | None = None
    results: tuple[BatchResult, ...] = ()
    error_message: str | None = None
    created_at: int | None = None
    finalized_at: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_body(cls, body: Any) -> BatchState:
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise TransientError(f"the Batch API answered without a batch object: {str(body)[:200]}")
        counts = body.get("request_counts") or {}
        error = body.get("error")
        usage = body.get("usage")
        return cls(
            id=body["id"],
            status=str(body.get("status") or "validating"),
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            usage=Usage.from_body(usage) if isinstance(usage, dict) else None,
            results=tuple(_result(item) for item in body.get("results") or () if isinstance(item, dict)),
            error_message=str(error.get("message") or error) if isinstance(error, dict) else (error or None),
            created_at=body.get("created_at") if isinstance(body.get("created_at"), int) else None,
            finalized_at=body.get("finalized_at") if isinstance(body.get("finalized_at"), int) else None,
        )


def _result(item: dict[str, Any]) -> BatchResult:
    custom_id = str(item.get("custom_id"))
    response = item.get("response")
    error = item.get("error")
    if isinstance(response, dict) and isinstance(response.get("body"), dict) and not error:
        status = int(response.get("status_code") or 200)
        body = response["body"]
        if status == 200:
            return BatchResult(custom_id, 200, body)
        inner = body.get("error") if isinstance(body.get("error"), dict) else {}
        return BatchResult(custom_id, status, None, str(inner.get("message") or f"HTTP {status}"))
    error = error if isinstance(error, dict) else {"message": str(error or "no response")}
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else 502
    return BatchResult(custom_id, status, None, str(error.get("message") or f"HTTP {status}"))


def submission(model: str, requests: Sequence[tuple[str, bytes]]) -> bytes:
    """The POST /batches body: `endpoint`, `model`, then `requests` (custom id, encoded chat body) in order."""
    head = b'{"endpoint":"' + ENDPOINT.encode() + b'","model":' + json.dumps(model).encode("utf-8")
    items = b",".join(
        b'{"custom_id":' + json.dumps(custom_id).encode("utf-8") + b',"body":' + body + b"}"
        for custom_id, body in requests
    )
    return head + b',"requests":[' + items + b"]}"


def result_failure(result: BatchResult, model: str, batch_id: str) -> CallError | RunStopped | None:
    """A failed result as the chat client would raise it: 401/402 stop the run, 429/5xx are transient
    (a later batch), 404 is no endpoint, anything else rejects the request. None for a 200."""
    if result.status_code == 200:
        return None
    where = f"{model} in batch {batch_id}: HTTP {result.status_code}"
    log.warning(
        "batch %s: request %s failed: HTTP %s %s", batch_id, result.custom_id, result.status_code, result.error_message
    )
    if result.status_code == 401:
        return AuthenticationError(f"OpenRouter rejected the API key in batch {batch_id} (HTTP 401); run stopped")
    if result.status_code == 402:
        return CreditsExhausted(f"OpenRouter reports insufficient credits in batch {batch_id} (HTTP 402); run stopped")
    if result.status_code in RETRYABLE_STATUS:
        return TransientError(where, model=model, status=result.status_code)
    if result.status_code == 404:
        return NoEndpointsError(where, model=model, status=404)
    return RequestRejected(f"{where} (rejected)", model=model, status=result.status_code)


class Exchange(Protocol):
    async def exchange(
        self, method: str, url: str, *, content: bytes | None = None, timeout_s: float = 60.0
    ) -> tuple[int, Any]: ...


class BatchClient:
    """The two calls, each retried on 429/5xx and dropped connections (`attempts` in all, doubling waits)."""

    def __init__(
        self,
        http: Exchange,
        url: str,
        *,
        attempts: int = 6,
        backoff_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self.url = url.rstrip("/")
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep

    async def submit(self, model: str, requests: Sequence[tuple[str, bytes]]) -> BatchState:
        """POST /batches; the 202's batch object (status `validating`)."""
        return await self._call("POST", self.url, submission(model, requests), SUBMIT_TIMEOUT_S, model)

    async def get(self, batch_id: str) -> BatchState:
        return await self._call("GET", f"{self.url}/{batch_id}", None, POLL_TIMEOUT_S, None)

    async def _call(self, method: str, url: str, content: bytes | None, timeout_s: float, model) -> BatchState:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                status, payload = await self._http.exchange(method, url, content=content, timeout_s=timeout_s)
                problem = f"HTTP {status}: {_message(payload)}"
            except TransportFailure as exc:
                status, payload, problem = None, None, exc.description
            if status in (200, 201, 202):
                return BatchState.from_body(payload)
            if status is not None and status not in RETRYABLE_STATUS:
                raise _refusal(status, payload, method, url, model)
            if attempt < self._attempts:
                log.info("%s %s: %s; trying again in %.1fs", method, url, problem, delay)
                await self._sleep(delay)
                delay = min(delay * 2, 60.0)
        raise TransientError(f"{method} {url}: {problem}; gave up after {self._attempts} attempts", model=model)


def _message(payload: Any) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")
    return str(payload)[:200] if payload else ""


def _refusal(status: int, payload: Any, method: str, url: str, model: str | None) -> Exception:
    message = _message(payload)
    if status == 401:
        return AuthenticationError("OpenRouter rejected the API key (HTTP 401): check OPENROUTER_API_KEY; run stopped")
    if status == 402:
        return CreditsExhausted(
            "OpenRouter reports insufficient credits (HTTP 402): add credits or raise the key's limit; the run stopped"
        )
    if status == 404 and method == "POST":
        return ConfigurationError(f"no Batch API at {url} (HTTP 404: {message}): check OPENROUTER_BATCH_URL")
    if status == 404:
        return NoEndpointsError(f"{method} {url}: HTTP 404: {message}", status=404)
    refused = f"{method} {url}: the Batch API refused it (HTTP {status}: {message})"
    return RequestRejected(refused, model=model, status=status)
