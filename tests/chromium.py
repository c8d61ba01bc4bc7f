"""A real headless Chromium for the report tests, driven over the DevTools protocol with aiohttp's
WebSocket client (already a dependency): open a file, evaluate JavaScript in the rendered page,
take a screenshot and list every request the page made."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

REQUIRE = "PIPELINE_REQUIRE_CHROMIUM"
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home on a machine without a network
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def chromium_or_skip() -> str:
    """The browser's path; skipped with the reason when it is missing, a failure where CI requires it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found:
        return found
    reason = "Chromium is not installed: `apt-get install -y chromium` runs the report's browser tests"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason} ({REQUIRE}=1)")
    pytest.skip(reason)


class Page:
    """One rendered page: `evaluate(js)`, `screenshot()`, and `requests` (every URL it asked for)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self._socket = socket
        self._session_id = session_id
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue = asyncio.Queue()
        self.requests: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif "method" in data:
                self._events.put_nowait(data)

    async def send(self, method: str, params: dict | None = None, *, session: bool = True) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session and self._session_id:
            message["sessionId"] = self._session_id
        future = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._socket.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def wait_for(self, event: str) -> dict[str, Any]:
        while True:
            data = await asyncio.wait_for(self._events.get(), 30)
            if data.get("method") == event:
                return data

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data


async def open_page(browser: str, url: str, check, *, width: int = 1280, height: int = 900) -> Any:
    """Start Chromium, open `url`, and return `await check(page)` once the page has loaded."""
    profile = tempfile.mkdtemp(prefix="pipeline-chromium-")
    try:
        process = subprocess.Popen(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and helper processes share the group we stop
        )
        try:
            endpoint = _devtools_endpoint(Path(profile), process)
            async with aiohttp.ClientSession() as http, http.ws_connect(endpoint, max_msg_size=0) as socket:
                page = Page(socket, "")
                target = await page.send("Target.createTarget", {"url": "about:blank"}, session=False)
                attached = await page.send(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
                )
                page._session_id = attached["sessionId"]
                await page.send("Page.enable")
                await page.send("Network.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                )
                await page.send("Page.navigate", {"url": url})
                await page.wait_for("Page.loadEventFired")
                return await check(page)
        finally:
            _stop(process)
    finally:
        _remove_profile(Path(profile))


def _stop(process: subprocess.Popen) -> None:
    """Stop Chromium and every process it started: a helper left running keeps writing the profile."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # helpers that outlived the browser


def _remove_profile(profile: Path) -> None:
    """Remove the throwaway profile; a helper still flushing it gets a few short chances to finish."""
    for _ in range(20):
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    shutil.rmtree(profile, ignore_errors=True)


def _devtools_endpoint(profile: Path, process: subprocess.Popen) -> str:
    """Chromium writes its port and browser path to DevToolsActivePort once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Chromium exited with {process.returncode} before it listened")
        if marker.is_file():
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise RuntimeError("Chromium did not open its DevTools port within 30 s")
