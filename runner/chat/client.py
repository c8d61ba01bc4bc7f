"""HTTP to OpenRouter through httpx's public API: one AsyncClient, requests built with
`build_request` and sent with `send`, one tenacity retry loop.

Sending is I/O; what is sent is decided by request.build_body. Transport failures (429, 408, 5xx,
timeouts, dropped connections) are retried here with exponential backoff and jitter, honouring
Retry-After; everything else is classified and raised as a CallError or RunStopped. Which
exception means what is failures.FAILURES, a table of every httpx and aiohttp exception class.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from ..errors import (
    AuthenticationError,
    CallError,
    ConfigurationError,
    CreditsExhausted,
    MissingAPIKey,
    NoEndpointsError,
    RequestRejected,
    TransientError,
)
from .failures import HANDLED, Failure, TransportFailure, describe, failure_of
from .flow import RequestGate
from .reply import Generation, Reply, Usage
from .transport import AiohttpTransport, ChatExchange

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
MAX_RETRY_AFTER_S = 60.0
GENERATION_TIMEOUT_S = 15.0
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 522, 524, 529})

# Told of each failed HTTP attempt that another follows: (status or None, what failed, seconds until the next).
OnRetry = Callable[[int | None, str, float], None]


class WaitRetryAfter(wait_base):
    """The server's Retry-After when it sent one (at most MAX_RETRY_AFTER_S), else `fallback`."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransportFailure) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_S)
        return self.fallback(retry_state)


class OpenRouterClient:
    """One httpx.AsyncClient per run; `transport` is injectable (an httpx.MockTransport in unit tests)."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        app_url: str | None = None,
        app_name: str | None = None,
        max_connections: int = 100,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        gate: RequestGate | None = None,
        require_key: bool = True,
        generation_wait_s: float = 10.0,
    ) -> None:
        if require_key and not api_key:
            raise MissingAPIKey()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if app_url:
            headers["HTTP-Referer"] = app_url
        if app_name:
            headers["X-OpenRouter-Title"] = app_name
        try:
            self._base_url = httpx.URL(base_url.rstrip("/") + "/")
        except httpx.InvalidURL as exc:
            raise ConfigurationError(f"OPENROUTER_BASE_URL is not a valid URL: {exc}") from None
        if self._base_url.scheme not in ("http", "https"):
            raise ConfigurationError(
                f"OPENROUTER_BASE_URL must start with https:// (or http://), not {self._base_url.scheme}://"
            )
        if self._base_url.userinfo:  # the key goes in a header; a user:password@ in the URL would be sent too
            raise ConfigurationError("OPENROUTER_BASE_URL must not hold a user:password@ part")
        self._transport = transport if transport is not None else production_transport(max_connections)
        self._http = httpx.AsyncClient(base_url=self._base_url, headers=headers, transport=self._transport)
        self._chat_url = self._base_url.join("chat/completions")  # absolute: merged once, not per call
        direct = isinstance(self._transport, AiohttpTransport)  # ours: the chat POST skips httpx's objects
        self._exchange = ChatExchange(str(self._chat_url), self._http.headers) if direct else None
        self._timeouts: dict[float, httpx.Timeout] = {}
        self._sleep = sleep
        self._wait = WaitRetryAfter(wait_random_exponential(multiplier=backoff_base_s, max=backoff_max_s))
        self._gate = gate
        self._generation_wait_s = generation_wait_s

    @property
    def base_url(self) -> str:
        """Where requests go, ending in `/` (for messages: it is never secret)."""
        return str(self._base_url)

    async def __aenter__(self) -> OpenRouterClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(
        self,
        body: dict[str, Any],
        *,
        timeout_s: float,
        retries: int,
        content: bytes | None = None,
        on_retry: OnRetry | None = None,
    ) -> Reply:
        """POST /chat/completions with transport retries; returns the 200 reply or raises CallError/RunStopped.

        `content` is the body already encoded (request.encode_body); without it the body is encoded here.
        `on_retry(status, reason, wait_s)` hears each failed attempt that another follows.
        """
        if content is None:
            content = _encode(body)
        model = body.get("model")
        try:  # the first attempt: most calls end here, without building a retry loop
            return await self._post_chat(model or "", content, timeout_s)
        except TransportFailure as exc:
            failed = exc  # tenacity decides on this failure as its attempt 1
        return await self.retried(
            lambda: self._post_chat(model or "", content, timeout_s), model, retries, on_retry, failed
        )

    async def retried(
        self,
        attempt: Callable[[], Awaitable[Reply]],
        model: str | None,
        retries: int,
        on_retry: OnRetry | None = None,
        failed: TransportFailure | None = None,
    ) -> Reply:
        """The one retry loop: `attempt` tried up to `retries + 1` times in all while it fails in transit, with
        backoff honouring Retry-After; `failed` is a first attempt already made, replayed as tenacity's attempt
        1 so it decides on it. Spent retries are a TransientError."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(TransportFailure),
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(state, model, on_retry),
            reraise=True,
        )
        try:
            async for tried in retrying:
                with tried:
                    if failed is not None:
                        replayed, failed = failed, None
                        raise replayed
                    return await attempt()
        except TransportFailure as exc:
            raise TransientError(
                f"{model}: {exc.description}; gave up after {retries + 1} attempt(s)",
                model=model,
                status=exc.status,
                attempts=retries + 1,
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _post_chat(self, model: str, content: bytes, timeout_s: float) -> Reply:
        if self._gate is None:
            started = time.perf_counter()
            status, payload, headers = await self._send("POST", self._chat_url, timeout_s, content=content)
        else:
            # The slot is held for the request only, never across a backoff sleep.
            async with self._gate.slot(model):
                started = time.perf_counter()
                status, payload, headers = await self._send("POST", self._chat_url, timeout_s, content=content)
            if status == 429:
                self._gate.throttled(model)
            elif status == 200:
                self._gate.succeeded(model)
        latency_ms = int((time.perf_counter() - started) * 1000)
        if status == 200:
            if not isinstance(payload, dict):
                raise TransportFailure("HTTP 200 with a body that is not a JSON object", Failure.PROTOCOL, status=200)
            return Reply.from_body(payload, latency_ms)
        raise _classify(status, payload, headers, model or None)

    async def get_json(self, path: str, *, timeout_s: float = 30.0, params: dict | None = None) -> Any:
        """GET a JSON document (models, generation, key); errors are classified like chat errors."""
        try:
            status, payload, headers = await self._send("GET", path, timeout_s, params=params)
        except TransportFailure as exc:
            if exc.failure is Failure.UNREACHABLE:
                raise ConfigurationError(
                    f"cannot reach OpenRouter at {self._base_url}: {exc.description}; check OPENROUTER_BASE_URL"
                ) from None
            raise TransientError(f"GET /{path}: {exc.description}") from None
        if status != 200:
            error = _classify(status, payload, headers, None)
            if isinstance(error, TransportFailure):
                raise TransientError(f"GET /{path}: {error.description}", status=status)
            raise error
        return payload

    async def exchange(
        self, method: str, url: str, *, content: bytes | None = None, timeout_s: float = 60.0
    ) -> tuple[int, Any]:
        """One request of another API (the Batch API's): its status and JSON body, no retries; an unusable
        URL is a configuration stop, a failed exchange a TransportFailure for the caller's own loop."""
        status, payload, _ = await self._send(method, url, timeout_s, content=content)
        return status, payload

    async def generation(self, generation_id: str) -> Generation | None:
        """GET /generation?id=: what OpenRouter recorded for a reply (its cost when `usage.cost` was missing).

        Right after a reply OpenRouter may still be indexing it and answer 404: it is asked again
        with doubling waits for up to `generation_wait_s` in all. None when no record came back.
        """
        waited, delay = 0.0, self._generation_wait_s / 32  # 10 s: six tries over about 9.7 s
        while True:
            try:
                status, payload, _ = await self._send(
                    "GET", "generation", GENERATION_TIMEOUT_S, params={"id": generation_id}
                )
                problem = f"HTTP {status}"
            except TransportFailure as exc:
                status, payload, problem = None, None, exc.description
            if status == 200:
                found = Generation.from_body(payload, generation_id)
                if found is not None:
                    return found
                problem = "HTTP 200 without a generation record"
            elif status is not None and status != 404 and status not in RETRYABLE_STATUS:
                break  # 400, 401, 403, ...: asking again will not help
            if delay <= 0 or waited + delay > self._generation_wait_s:
                break
            await self._sleep(delay)
            waited += delay
            delay *= 2
        log.warning("GET /generation?id=%s gave no record (%s, after %.1fs)", generation_id, problem, waited)
        return None

    async def _send(
        self,
        method: str,
        url: httpx.URL | str,
        timeout_s: float,
        *,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One exchange: the status, the body parsed as JSON (or its first 500 bytes as text), the headers.

        Failures are looked up in failures.FAILURES: a configuration stop, a bug of ours raised as
        it is, or a TransportFailure for the retry loop.
        """
        try:
            if url is self._chat_url and self._exchange is not None:
                status, raw, headers = await self._exchange.post(self._transport, content, timeout_s)
            else:
                timeout = self._timeouts.get(timeout_s)
                if timeout is None:
                    timeout = self._timeouts[timeout_s] = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
                async with asyncio.timeout(timeout_s):
                    request = self._http.build_request(method, url, content=content, params=params, timeout=timeout)
                    response = await self._http.send(request)  # stream=True and aiter_lines() will read SSE
                    status, raw, headers = response.status_code, response.content, response.headers
        except HANDLED as exc:
            raise _transport_failure(exc, timeout_s) from None
        return status, _parse(raw), headers


def production_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    return AiohttpTransport(max_connections)


def _transport_failure(exc: BaseException, timeout_s: float) -> TransportFailure:
    """A failed exchange as a TransportFailure for the retry loop; a configuration stop or a bug of ours is raised."""
    failure = failure_of(exc)
    if failure is Failure.MISUSE:
        raise exc
    if failure is Failure.CONFIGURATION:
        kind = "a valid URL" if isinstance(exc, httpx.InvalidURL) else "usable"
        raise ConfigurationError(f"OPENROUTER_BASE_URL is not {kind}: {exc}") from None
    return TransportFailure(describe(exc, failure, timeout_s), failure)


def _parse(raw: bytes) -> Any:
    """A body parsed as JSON, or its first 500 bytes as text."""
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw[:500].decode("utf-8", "replace")


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _classify(status: int, payload: Any, headers: Mapping[str, str], model: str | None) -> Exception:
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or (payload if isinstance(payload, str) else "") or f"HTTP {status}")
    metadata = error.get("metadata")
    detail = f"HTTP {status}: {message}"
    log.warning(
        "OpenRouter error: status=%s model=%s code=%s message=%r metadata=%s",
        status,
        model,
        error.get("code"),
        message,
        json.dumps(metadata, ensure_ascii=False)[:2000] if metadata is not None else None,
    )
    if status == 401:
        return AuthenticationError(
            "OpenRouter rejected the API key (HTTP 401): check OPENROUTER_API_KEY; the run stopped"
        )
    if status == 402:
        return CreditsExhausted(
            "OpenRouter reports insufficient credits (HTTP 402): add credits or raise the key's limit; the run stopped"
        )
    if status in RETRYABLE_STATUS:
        return TransportFailure(detail, Failure.PROTOCOL, status=status, retry_after=_retry_after(headers))
    if status == 404 and not error:
        # OpenRouter answers a 404 with its {"error": {...}} body; anything else is another server.
        return ConfigurationError(
            f"HTTP 404 from a server that is not an OpenRouter API (answer: {_excerpt(payload)}):"
            " check OPENROUTER_BASE_URL"
        )
    if status == 404:
        return NoEndpointsError(f"{model}: {detail}", model=model, status=status)
    if status == 403:
        return RequestRejected(f"{model}: the request was flagged by moderation (HTTP 403)", model=model, status=status)
    return RequestRejected(f"{model}: the request was rejected (HTTP {status})", model=model, status=status)


def _excerpt(payload: Any) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    text = " ".join(text.split())
    return repr(text[:120] + ("..." if len(text) > 120 else ""))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _log_retry(state: RetryCallState, model: str | None, on_retry: OnRetry | None = None) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("retrying %s after %s (attempt %d, waiting %.2fs)", model, exc, state.attempt_number, wait)
    if on_retry is not None:
        failure = exc if isinstance(exc, TransportFailure) else None
        on_retry(failure.status if failure else None, failure.description if failure else str(exc), wait)


__all__ = ["CallError", "OpenRouterClient", "Reply", "Usage"]
