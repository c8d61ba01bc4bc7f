"""The production transport: httpx's transport interface over one aiohttp ClientSession, and the
chat POST's direct exchange over the same session.

httpcore's pool costs milliseconds of CPU per call at high concurrency (encode/httpx #3215);
aiohttp's connector does not. The client speaks httpx (requests built by the AsyncClient, a
MockTransport in unit tests); AiohttpTransport carries them over aiohttp, bodies streaming (for
server-sent events). The chat POST, the one request a run sends thousands of times, skips
httpx's request and response objects: ChatExchange sends the same headers and body straight
through the transport's session (bench B2: httpx's objects and the stream wrappers cost about
a tenth of a pipeline call's CPU). aiohttp's exceptions come through as they are:
failures.FAILURES names every one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
import httpx
from multidict import CIMultiDict


class AiohttpBody(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx's stream; the connection goes back to the pool when it is read."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Requests in memory (the client never streams an upload), no redirects, bodies left encoded
    for httpx to decode; the session is made on first use, inside the running event loop."""

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=httpx.create_ssl_context())
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        limits = (timeout.get("connect"), timeout.get("read"))
        client_timeout = self._timeouts.get(limits)
        if client_timeout is None:
            client_timeout = self._timeouts[limits] = aiohttp.ClientTimeout(
                total=None, sock_connect=limits[0], sock_read=limits[1]
            )
        response = await self.session().request(
            request.method,
            str(request.url),
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw],
            data=request.content or None,
            allow_redirects=False,
            timeout=client_timeout,
        )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=AiohttpBody(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ChatExchange:
    """The chat POST without httpx's objects: the AsyncClient's headers, merged once, and one
    aiohttp request whose total time is bounded by the call's timeout. aiohttp adds Host and
    Content-Length, and undoes gzip or deflate (the only encodings it is offered)."""

    def __init__(self, url: str, client_headers: Mapping[str, str]) -> None:
        self._url = url
        headers = CIMultiDict(client_headers)
        headers["Accept-Encoding"] = "gzip, deflate"
        self._headers = headers
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def post(
        self, transport: AiohttpTransport, content: bytes, timeout_s: float
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Status, body and headers of one POST; aiohttp's exceptions (and TimeoutError) as raised."""
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(
                total=timeout_s, sock_connect=min(timeout_s, 15.0)
            )
        async with transport.session().post(
            self._url, data=content, headers=self._headers, allow_redirects=False, timeout=timeout, auto_decompress=True
        ) as response:
            return response.status, await response.read(), response.headers
