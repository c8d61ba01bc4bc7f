from __future__ import annotations

import asyncio
import gzip
import inspect
import json

import aiohttp
import httpx
import pytest
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from runner.chat.client import OpenRouterClient
from runner.chat.failures import FAILURES, Failure
from runner.errors import (
    AuthenticationError,
    ConfigurationError,
    CreditsExhausted,
    NoEndpointsError,
    RequestRejected,
    TransientError,
)
from runner.fake import Fault
from runner.fake.server import mock_transport

from .conftest import TEST_KEY

BODY = {"model": "google/gemini-2.5-flash-lite", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _client(fake, sleep=None, **kwargs) -> OpenRouterClient:
    return OpenRouterClient(
        api_key=TEST_KEY,
        base_url="https://openrouter.test/api/v1",
        transport=mock_transport(fake),
        sleep=sleep or SleepRecorder(),
        **kwargs,
    )


async def _chat(client, retries=3, timeout_s=5.0):
    async with client:
        return await client.chat(BODY, timeout_s=timeout_s, retries=retries)


def test_reply_reads_usage_cost_and_generation_id(fake):
    reply = asyncio.run(_chat(_client(fake)))
    assert reply.generation_id.startswith("gen-")
    assert reply.model == "google/gemini-2.5-flash-lite"
    assert reply.provider == "Google AI Studio"
    assert (
        reply.usage.cost_usd > 0
        and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    assert reply.billed


def test_headers_identify_the_app_and_carry_the_key(fake):
    asyncio.run(_chat(_client(fake, app_url="https://shop.example", app_name="Shop")))
    headers = fake.history[-1].headers
    assert headers["authorization"] == f"Bearer {TEST_KEY}"
    assert headers["http-referer"] == "https://shop.example"
    assert headers["x-openrouter-title"] == "Shop"


def test_retry_after_seconds_is_honoured(fake):
    fake.enqueue(Fault("status", status=429, retry_after="7"))
    sleep = SleepRecorder()
    asyncio.run(_chat(_client(fake, sleep)))
    assert sleep.waits == [7.0]
    assert fake.chat_requests == 2


def test_retry_after_http_date_is_honoured(fake):
    fake.enqueue(Fault("status", status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    sleep = SleepRecorder()
    asyncio.run(_chat(_client(fake, sleep)))
    assert sleep.waits == [0.0]  # a date in the past: retry at once


def test_a_retry_after_of_an_hour_waits_at_most_a_minute(fake):
    fake.enqueue(Fault("status", status=429, retry_after="3600"))
    sleep = SleepRecorder()
    asyncio.run(_chat(_client(fake, sleep)))
    assert sleep.waits == [60.0] and fake.chat_requests == 2


def test_the_first_attempt_runs_inside_the_retry_loop(fake, caplog):
    # One loop: the first failure is logged and counted like every later one.
    fake.enqueue(Fault("status", status=503, times=2))
    with caplog.at_level("INFO", logger="runner.chat.client"):
        asyncio.run(_chat(_client(fake)))
    assert [
        record.getMessage().split(" (attempt ")[1][:1] for record in caplog.records if "retrying" in record.getMessage()
    ] == ["1", "2"]


def test_backoff_is_exponential_with_jitter_and_capped(fake):
    fake.enqueue(Fault("status", status=502, times=5))
    sleep = SleepRecorder()
    with pytest.raises(TransientError) as caught:
        asyncio.run(_chat(_client(fake, sleep, backoff_base_s=1.0, backoff_max_s=4.0), retries=4))
    assert caught.value.attempts == 5 and fake.chat_requests == 5
    assert len(sleep.waits) == 4
    assert all(0 <= wait <= cap for wait, cap in zip(sleep.waits, [1, 2, 4, 4], strict=True))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_then_raised(fake, status):
    fake.enqueue(Fault("status", status=status, times=3))
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        asyncio.run(_chat(_client(fake), retries=2))
    assert fake.chat_requests == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, RequestRejected),
        (403, RequestRejected),
        (404, NoEndpointsError),
        (401, AuthenticationError),
        (402, CreditsExhausted),
    ],
)
def test_final_statuses_are_not_retried(fake, status, error):
    fake.enqueue(Fault("status", status=status))
    with pytest.raises(error):
        asyncio.run(_chat(_client(fake)))
    assert fake.chat_requests == 1


def test_auth_and_credit_errors_stop_the_run_with_exit_code_3():
    assert AuthenticationError("x").exit_code == 3 and CreditsExhausted("x").exit_code == 3


def test_dropped_connection_is_retried(fake):
    fake.enqueue(Fault("drop"))
    reply = asyncio.run(_chat(_client(fake)))
    assert reply.billed and fake.chat_requests == 2


def test_a_reply_slower_than_timeout_is_retried(fake):
    fake.enqueue(Fault("hang", delay_s=2.0))
    reply = asyncio.run(_chat(_client(fake), timeout_s=0.2))
    assert reply.billed and fake.chat_requests == 2


def test_non_json_200_is_retried(fake):
    fake.enqueue(Fault("garbage"))
    reply = asyncio.run(_chat(_client(fake)))
    assert reply.billed and fake.chat_requests == 2


def test_missing_key_is_a_configuration_stop():
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        OpenRouterClient(api_key="", transport=httpx.MockTransport(lambda request: httpx.Response(200)))


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _library_exceptions() -> set[type[BaseException]]:
    """Every exception class httpx exports or defines, and every aiohttp client error."""
    classes = {getattr(httpx, name) for name in httpx.__all__}
    classes = {cls for cls in classes if isinstance(cls, type) and issubclass(cls, BaseException)}
    classes |= {
        httpx.HTTPError,
        httpx.StreamError,
        *_all_subclasses(httpx.HTTPError),
        *_all_subclasses(httpx.StreamError),
    }
    classes |= {aiohttp.ClientError, *_all_subclasses(aiohttp.ClientError)}
    return {cls for cls in classes if cls.__module__.split(".")[0] in ("httpx", "aiohttp")}


def test_every_httpx_and_aiohttp_exception_class_has_a_kind_of_its_own():
    # A class a library upgrade adds fails here until FAILURES says what it means.
    classes = _library_exceptions()
    assert len(classes) > 50
    missing = sorted(cls.__qualname__ for cls in classes if cls not in FAILURES)
    assert not missing, f"add these to runner/chat/failures.py FAILURES: {missing}"


class _Key:  # what aiohttp's connector errors read from a connection key
    host, port, ssl = "openrouter.test", 443, True


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of any library exception class, its constructor's required arguments filled in."""
    request = httpx.Request("POST", "https://openrouter.test/api/v1/chat/completions")
    info = aiohttp.RequestInfo(yarl.URL("https://openrouter.test"), "POST", CIMultiDictProxy(CIMultiDict()))
    values = {
        "message": "boom",
        "request": request,
        "response": httpx.Response(500, request=request),
        "connection_key": _Key(),
        "os_error": ConnectionRefusedError(111, "Connection refused"),
        "certificate_error": ValueError("bad certificate"),
        "request_info": info,
        "history": (),
        "url": "https://openrouter.test",
        "path": "/tmp/socket",
        "expected": b"a",
        "got": b"b",
        "host": "openrouter.test",
        "port": 443,
    }
    parameters = inspect.signature(cls.__init__).parameters
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    required = [
        name
        for name, parameter in parameters.items()
        if name != "self" and parameter.default is parameter.empty and parameter.kind not in variadic
    ]
    if not required:
        takes_text = any(parameter.kind is inspect.Parameter.VAR_POSITIONAL for parameter in parameters.values())
        return cls("boom") if takes_text or "message" in parameters else cls()
    positional = [values[name] for name in required if parameters[name].kind is not inspect.Parameter.KEYWORD_ONLY]
    keywords = {name: values[name] for name in required if parameters[name].kind is inspect.Parameter.KEYWORD_ONLY}
    return cls(*positional, **keywords)


def _raising(exc: BaseException) -> OpenRouterClient:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return OpenRouterClient(
        api_key=TEST_KEY,
        base_url="https://openrouter.test/api/v1",
        transport=httpx.MockTransport(handler),
        sleep=SleepRecorder(),
    )


@pytest.mark.parametrize("cls", sorted(_library_exceptions(), key=lambda cls: cls.__module__ + cls.__qualname__))
def test_each_exception_raised_while_sending_ends_as_its_kind_says(cls):
    """Through the real sending path: retried, a configuration stop, or (a bug of ours) raised as it is."""
    exc = _instance(cls)
    kind = FAILURES[cls]
    if kind is Failure.MISUSE:
        with pytest.raises(cls):
            asyncio.run(_chat(_raising(exc), retries=1))
    elif kind is Failure.CONFIGURATION:
        with pytest.raises(ConfigurationError, match="OPENROUTER_BASE_URL"):
            asyncio.run(_chat(_raising(exc), retries=1))
    else:
        with pytest.raises(TransientError, match="gave up after 2 attempt") as caught:
            asyncio.run(_chat(_raising(exc), retries=1))
        assert caught.value.attempts == 2
        if kind is Failure.UNREACHABLE:  # at startup (the catalogue) nothing answering stops the run
            with pytest.raises(ConfigurationError, match="cannot reach OpenRouter"):
                asyncio.run(_raising(exc).get_json("models"))
        else:
            with pytest.raises(TransientError, match="GET /models"):
                asyncio.run(_raising(exc).get_json("models"))


def test_a_refused_connection_reported_as_a_timeout_is_unreachable():
    # A wrapping transport (httpx-aiohttp does this) reports aiohttp's connection errors as ConnectTimeout.
    try:
        raise httpx.ConnectTimeout("boom") from _instance(aiohttp.ClientConnectorError)
    except httpx.ConnectTimeout as exc:
        reported = exc
    with pytest.raises(ConfigurationError, match=r"connection refused \(openrouter.test:443\): nothing listens there"):
        asyncio.run(_raising(reported).get_json("models"))


async def _serving(handler):
    """A real HTTP server on 127.0.0.1 answering the chat POST with `handler`; returns (runner, base URL)."""
    app = web.Application()
    app.router.add_post("/api/v1/chat/completions", handler)
    served = web.AppRunner(app)
    await served.setup()
    site = web.TCPSite(served, "127.0.0.1", 0)
    await site.start()
    host, port = served.addresses[0][:2]
    return served, f"http://{host}:{port}/api/v1"


def test_the_direct_chat_post_sends_what_httpx_sends_through_the_same_transport():
    # The chat POST skips httpx's request and response objects (bench B2): it must still send what the
    # AsyncClient would, headers (the key among them) and body, to the same URL.
    seen: list[tuple[str, str, dict, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}  # names are case-insensitive
        seen.append((request.method, request.path, headers, await request.read()))
        return web.json_response({"id": "gen-1", "choices": [{"message": {"content": "ok"}}]})

    content = b'{"model":"m/x","messages":[]}'

    async def both():
        served, base_url = await _serving(handler)
        try:
            async with OpenRouterClient(api_key=TEST_KEY, base_url=base_url, app_name="bench") as client:
                reply = await client.chat({"model": "m/x"}, timeout_s=5, retries=0, content=content)
                response = await client._http.post("chat/completions", content=content)
                return reply, response
        finally:
            await served.cleanup()

    reply, response = asyncio.run(both())
    assert reply.content == "ok" and response.status_code == 200
    (direct_method, direct_path, direct, direct_body), (method, path, public, body) = seen
    assert (
        (direct_method, direct_path, direct_body)
        == (method, path, body)
        == ("POST", "/api/v1/chat/completions", content)
    )
    assert direct["authorization"] == f"Bearer {TEST_KEY}" and direct["x-openrouter-title"] == "bench"
    offered = {"accept-encoding"}  # the direct POST offers only what aiohttp decodes itself
    assert {k: v for k, v in direct.items() if k not in offered} == {
        k: v for k, v in public.items() if k not in offered
    }


def test_a_compressed_reply_is_decoded_on_the_direct_post():
    body = json.dumps({"id": "gen-7", "choices": [{"message": {"content": "zipped"}}]}).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(body), headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def call():
        served, base_url = await _serving(handler)
        try:
            async with OpenRouterClient(api_key=TEST_KEY, base_url=base_url) as client:
                return await client.chat({"model": "m/x", "messages": []}, timeout_s=5, retries=0)
        finally:
            await served.cleanup()

    reply = asyncio.run(call())
    assert reply.content == "zipped" and reply.generation_id == "gen-7"


def test_key_never_appears_in_errors(fake):
    fake.enqueue(Fault("status", status=401))
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(_chat(_client(fake)))
    assert TEST_KEY not in str(caught.value) and TEST_KEY not in repr(caught.value)


def _generation_client(answers: list[httpx.Response], sleep: SleepRecorder, wait_s: float = 10.0):
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return answers.pop(0) if len(answers) > 1 else answers[0]

    client = OpenRouterClient(
        api_key=TEST_KEY,
        base_url="https://openrouter.test/api/v1",
        transport=httpx.MockTransport(handler),
        sleep=sleep,
        generation_wait_s=wait_s,
    )
    return client, asked


NOT_YET = httpx.Response(404, json={"error": {"code": 404, "message": "Generation not found"}})


def test_generation_lookup_waits_while_openrouter_indexes_the_reply():
    record = {"data": {"id": "gen-9", "total_cost": 0.0021, "upstream_inference_cost": 0.002, "is_byok": True}}
    sleep = SleepRecorder()
    client, asked = _generation_client([NOT_YET, NOT_YET, httpx.Response(200, json=record)], sleep)
    found = asyncio.run(client.generation("gen-9"))
    assert (found.total_cost_usd, found.upstream_cost_usd, found.is_byok) == (0.0021, 0.002, True)
    assert asked == ["https://openrouter.test/api/v1/generation?id=gen-9"] * 3
    assert sleep.waits == [0.3125, 0.625]  # doubling


def test_generation_lookup_gives_up_within_its_time(caplog):
    sleep = SleepRecorder()
    client, asked = _generation_client([NOT_YET], sleep, wait_s=10.0)
    assert asyncio.run(client.generation("gen-9")) is None
    assert len(asked) == 6 and sum(sleep.waits) <= 10.0
    assert "gen-9" in caplog.text and "HTTP 404" in caplog.text


def test_generation_lookup_does_not_repeat_a_final_error():
    sleep = SleepRecorder()
    client, asked = _generation_client([httpx.Response(401, json={"error": {"code": 401, "message": "no"}})], sleep)
    assert asyncio.run(client.generation("gen-9")) is None
    assert len(asked) == 1 and sleep.waits == []
