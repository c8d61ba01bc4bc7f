"""HTTP to OpenRouter: the only module that sees httpx (and aiohttp) exceptions, and maps all of them.

Sending is I/O; what is sent is decided by request.build_body. Transport failures (429, 408, 5xx,
timeouts, dropped connections) are retried here with exponential backoff and jitter, honouring
Retry-After; everything else is classified and raised as a CallError or RunStopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

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
from .flow import RequestGate
from .reply import Generation, Reply, Usage

log = logging.getLogger("runner.client")

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
MAX_RETRY_AFTER_S = 60.0
GENERATION_TIMEOUT_S = 15.0
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class _Retryable(Exception):
    """Internal: one transport attempt failed in a way worth retrying."""

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.retry_after = retry_after
        self.unreachable = unreachable  # nothing answered at the address: refused, or no such host


class OpenRouterClient:
    """One transport per run; `transport` is injectable (an httpx.MockTransport in unit tests).

    Requests are httpx.Request objects handed straight to the transport: the URL and headers are
    built once, and httpx.AsyncClient's per-request merging (about 0.2 ms of CPU a call, more
    than the aiohttp transport itself) is skipped. There are no cookies or redirects to follow.
    """

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
            raise ConfigurationError(f"OPENROUTER_BASE_URL must start with https:// (or http://), not {base_url!r}")
        self._chat_url = self._base_url.join("chat/completions")
        self._headers = httpx.Headers(headers)
        # Raw header pairs for the hot path: with Host and Content-Length given, httpx skips
        # re-deriving them for every request (see _send).
        self._raw_headers = [*self._headers.raw, (b"Host", self._chat_url.netloc)]
        self._timeouts: dict[float, dict[str, float]] = {}
        self._transport = transport if transport is not None else production_transport(max_connections)
        self._sleep = sleep
        self._wait = wait_random_exponential(multiplier=backoff_base_s, max=backoff_max_s)
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
        await self._transport.aclose()

    async def chat(
        self, body: dict[str, Any], *, timeout_s: float, retries: int, content: bytes | None = None
    ) -> Reply:
        """POST /chat/completions with transport retries; returns the 200 reply or raises CallError/RunStopped.

        `content` is the body already encoded (request.encode_body); without it the body is encoded here.
        """
        if content is None:
            content = _encode(body)
        try:
            return await self._post_chat(body, content, timeout_s)
        except _Retryable as exc:
            first_failure: _Retryable | None = exc
        # Only a failed first attempt pays for tenacity; the failure is replayed so that its
        # backoff, Retry-After and attempt count apply from the start.
        model = body.get("model")
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=self._wait_for,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=lambda state: _log_retry(state, model),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure
                    return await self._post_chat(body, content, timeout_s)
        except _Retryable as exc:
            raise TransientError(
                f"{model}: {exc.description}; gave up after {retries + 1} attempt(s)",
                model=model,
                status=exc.status,
                attempts=retries + 1,
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_S)
        return self._wait(state)

    async def _post_chat(self, body: dict[str, Any], content: bytes, timeout_s: float) -> Reply:
        model = body.get("model") or ""
        if self._gate is None:
            started = time.perf_counter()
            status, payload, headers = await self._send("POST", self._chat_url, timeout_s, content)
        else:
            # The slot is held for the request only, never across a backoff sleep.
            async with self._gate.slot(model):
                started = time.perf_counter()
                status, payload, headers = await self._send("POST", self._chat_url, timeout_s, content)
            if status == 429:
                self._gate.throttled(model)
            elif status == 200:
                self._gate.succeeded(model)
        latency_ms = int((time.perf_counter() - started) * 1000)
        if status == 200:
            if not isinstance(payload, dict):
                raise _Retryable("HTTP 200 with a body that is not a JSON object", status=200)
            return Reply.from_body(payload, latency_ms)
        raise _classify(status, payload, headers, body.get("model"))

    async def get_json(self, path: str, *, timeout_s: float = 30.0, params: dict | None = None) -> Any:
        """GET a JSON document (models, generation, key); errors are classified like chat errors."""
        url = self._base_url.join(path)
        if params:
            url = url.copy_merge_params(params)
        try:
            status, payload, headers = await self._send("GET", url, timeout_s, None)
        except _Retryable as exc:
            if exc.unreachable:
                raise ConfigurationError(
                    f"cannot reach OpenRouter at {self._base_url}: {exc.description}; check OPENROUTER_BASE_URL"
                ) from None
            raise TransientError(f"GET /{path}: {exc.description}") from None
        if status != 200:
            error = _classify(status, payload, headers, None)
            if isinstance(error, _Retryable):
                raise TransientError(f"GET /{path}: {error.description}", status=status)
            raise error
        return payload

    async def generation(self, generation_id: str) -> Generation | None:
        """GET /generation?id=: what OpenRouter recorded for a reply (its cost when `usage.cost` was missing).

        Right after a reply OpenRouter may still be indexing it and answer 404: it is asked again
        with doubling waits for up to `generation_wait_s` in all. None when no record came back.
        """
        url = self._base_url.join("generation").copy_merge_params({"id": generation_id})
        waited, delay = 0.0, self._generation_wait_s / 32  # 10 s: six tries over about 9.7 s
        while True:
            try:
                status, payload, _ = await self._send("GET", url, GENERATION_TIMEOUT_S, None)
                problem = f"HTTP {status}"
            except _Retryable as exc:
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
        self, method: str, url: httpx.URL, timeout_s: float, content: bytes | None
    ) -> tuple[int, Any, httpx.Headers]:
        timeouts = self._timeouts.get(timeout_s)
        if timeouts is None:
            timeouts = {"connect": min(timeout_s, 15.0), "read": timeout_s, "write": timeout_s, "pool": timeout_s}
            self._timeouts[timeout_s] = timeouts
        if content is None:
            request = httpx.Request(method, url, headers=self._headers, extensions={"timeout": timeouts})
        else:
            headers = [*self._raw_headers, (b"Content-Length", str(len(content)).encode("ascii"))]
            stream = httpx.ByteStream(content)
            request = httpx.Request(method, url, headers=headers, stream=stream, extensions={"timeout": timeouts})
            request.read()  # the body is in memory already: mark it read, as httpx does for `content=`
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._transport.handle_async_request(request)
                raw = await _read_body(response)
        except TimeoutError:
            raise _Retryable(f"no reply within {timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc) from None
        except (aiohttp.ClientError, OSError) as exc:
            if _is_unreachable(exc):
                raise _Retryable(_unreachable_reason(exc), unreachable=True) from None
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        try:
            payload = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = raw[:500].decode("utf-8", "replace")
        return response.status_code, payload, response.headers


async def _read_body(response: httpx.Response) -> bytes:
    """The body; an unencoded one skips httpx's decoder chain (a measurable share of a call's CPU)."""
    if "content-encoding" in response.headers or response.is_stream_consumed:
        return await response.aread()  # httpx's decoders undo gzip; a read response returns its content
    return b"".join([chunk async for chunk in response.aiter_raw()])


def production_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    # httpcore's pool costs milliseconds of CPU per call at high concurrency (encode/httpx #3215);
    # aiohttp's connector does not, so httpx sends through it.
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return AiohttpTransport(limits=limits)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _map_transport_error(exc: httpx.HTTPError | httpx.InvalidURL) -> Exception:
    """Every httpx exception becomes a retryable failure or a configuration stop."""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ConfigurationError(f"OPENROUTER_BASE_URL is not usable: {exc}")
    if isinstance(exc, httpx.ConnectError) or _is_unreachable(exc.__cause__):
        # httpx-aiohttp reports a refused connection as ConnectTimeout: the cause tells the truth.
        return _Retryable(_unreachable_reason(exc.__cause__ or exc), unreachable=True)
    if isinstance(exc, httpx.TimeoutException):
        return _Retryable(f"timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return _Retryable(f"connection failed ({type(exc).__name__}: {exc})")
    return _Retryable(f"HTTP failure ({type(exc).__name__}: {exc})")


def _is_unreachable(exc: BaseException | None) -> bool:
    """Nothing listens at the address, or the host name does not resolve (not a slow server)."""
    return isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError | socket.gaierror)


def _unreachable_reason(exc: BaseException) -> str:
    """The operating system's reason, said plainly: connection refused, or no such host."""
    cause = getattr(exc, "os_error", None) or exc  # aiohttp's connector errors wrap the OSError
    host = f" ({exc.host}:{exc.port})" if isinstance(exc, aiohttp.ClientConnectorError) else ""
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused{host}: nothing listens there"
    if isinstance(cause, socket.gaierror):
        return f"the host name does not resolve{host}: {cause.strerror or cause}"
    return f"cannot connect{host}: {cause}"


def map_httpx_exception(exc: Exception) -> Exception:
    """Public for the test that proves every httpx exception class is mapped."""
    if isinstance(exc, httpx.InvalidURL):
        return ConfigurationError(f"OPENROUTER_BASE_URL is not a valid URL: {exc}")
    return _map_transport_error(exc)


def _classify(status: int, payload: Any, headers: httpx.Headers, model: str | None) -> Exception:
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
        return _Retryable(detail, status=status, retry_after=_retry_after(headers))
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


def _retry_after(headers: httpx.Headers) -> float | None:
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


def _log_retry(state: RetryCallState, model: str | None) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("retrying %s after %s (attempt %d, waiting %.2fs)", model, exc, state.attempt_number, wait)


__all__ = ["CallError", "OpenRouterClient", "Reply", "Usage", "map_httpx_exception"]
