"""The fake OpenRouter on the wire: an aiohttp server on 127.0.0.1 (free port), or an httpx.MockTransport.

`python -m runner.fake.server --latency-ms 100` serves it in its own process (benchmarks);
`FakeServer(fake)` runs it on a background thread (`--mock`, end-to-end tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator

import httpx
from aiohttp import web

from .openrouter import FakeOpenRouter, FakeResponse


def _app(fake: FakeOpenRouter) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        reply = await fake.handle(request.method, request.path, dict(request.query), dict(request.headers), raw)
        if reply.action == "drop":
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection close with no reply
            return web.Response(status=204)
        if reply.events is not None:
            return await _stream_aiohttp(request, reply)
        return _to_aiohttp(reply)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def _to_aiohttp(reply: FakeResponse) -> web.Response:
    if isinstance(reply.body, str):
        return web.Response(status=reply.status, text=reply.body, headers=dict(reply.headers), content_type="text/html")
    return web.Response(
        status=reply.status,
        body=json.dumps(reply.body).encode("utf-8"),
        headers=dict(reply.headers),
        content_type="application/json",
    )


async def _stream_aiohttp(request: web.Request, reply: FakeResponse) -> web.StreamResponse:
    """A streamed reply: each event written (and flushed) `event_delay_s` after the one before."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", **reply.headers})
    await response.prepare(request)
    async for event in _paced(reply):
        await response.write(event)
    await response.write_eof()
    return response


async def _paced(reply: FakeResponse) -> AsyncIterator[bytes]:
    for number, event in enumerate(reply.events or ()):
        if number and reply.event_delay_s:
            await asyncio.sleep(reply.event_delay_s)
        yield event.encode("utf-8")


def mock_transport(fake: FakeOpenRouter) -> httpx.MockTransport:
    """The same fake for unit tests: no sockets, drops become httpx.RemoteProtocolError."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raw = await request.aread()
        reply = await fake.handle(
            request.method, request.url.path, dict(request.url.params), dict(request.headers), raw
        )
        if reply.action == "drop":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        if reply.events is not None:
            headers = {"Content-Type": "text/event-stream", **reply.headers}
            return httpx.Response(200, headers=headers, content=_paced(reply))
        if isinstance(reply.body, str):
            return httpx.Response(reply.status, text=reply.body, headers=dict(reply.headers))
        return httpx.Response(reply.status, json=reply.body, headers=dict(reply.headers))

    return httpx.MockTransport(handler)


class FakeServer:
    """Serves a FakeOpenRouter on 127.0.0.1 from a background thread with its own event loop."""

    def __init__(self, fake: FakeOpenRouter) -> None:
        self.fake = fake
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-openrouter", daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(10)
        return self.base_url

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(_app(self.fake), access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.SockSite(self._runner, self._socket)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()


async def serve_forever(fake: FakeOpenRouter, port: int) -> None:
    runner = web.AppRunner(_app(fake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server else port
    print(f"http://127.0.0.1:{bound}/api/v1", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenRouter on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every reply")
    parser.add_argument("--stream-delay-ms", type=float, default=0.0, help="pause between a streamed reply's events")
    parser.add_argument("--batch-delay-ms", type=float, default=200.0, help="a batch's time from 202 to completed")
    arguments = parser.parse_args(argv)
    fake = FakeOpenRouter(
        latency_s=arguments.latency_ms / 1000, history_limit=1000, stream_delay_s=arguments.stream_delay_ms / 1000
    )
    fake.batches.delay_s = arguments.batch_delay_ms / 1000
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(fake, arguments.port))


if __name__ == "__main__":
    main()
