"""The hard cost cap: reserve a request's worst case before sending it, settle with `usage.cost`."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..chat.catalog import ModelInfo
from ..chat.messages import BYTES_PER_TOKEN, Message
from ..chat.plugins import web_search_fee_usd
from ..errors import BudgetExceeded
from ..plan.attachments import PAGE_PRICE_USD, URL_DOCUMENT_PAGES, pdf_pages


def estimate_prompt_tokens(messages: Iterable[Message], extra: Any = None) -> int:
    """An upper-leaning estimate of the prompt tokens: each message's parts say what they cost."""
    tokens = sum(message.estimated_tokens() for message in messages)
    if extra is not None:
        tokens += len(json.dumps(extra, ensure_ascii=False).encode("utf-8")) / BYTES_PER_TOKEN
    return math.ceil(round(tokens, 6))  # thirds of bytes added as floats: 9.000000000000002 is 9


def body_prompt_tokens(body: dict[str, Any]) -> int:
    """The estimate for a request body as sent: its messages read back as parts, plus its response_format
    (and its tools' definitions, which the model reads as prompt too)."""
    extra = body.get("response_format") if "tools" not in body else [body.get("response_format"), body["tools"]]
    return estimate_prompt_tokens(map(Message.from_wire, body["messages"]), extra)


def body_images(body: dict[str, Any]) -> int:
    """The images a request sends: each is billed `pricing.image` besides its tokens."""
    return sum(
        1
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    )


def parsing_cost(body: dict[str, Any]) -> float:
    """What the file-parser plugin charges for the request's PDFs, when its engine is paid per page."""
    plugins = [plugin for plugin in body.get("plugins") or () if plugin.get("id") == "file-parser"]
    engines = [(plugin.get("pdf") or {}).get("engine") for plugin in plugins]
    price = max((PAGE_PRICE_USD.get(engine, 0.0) for engine in engines), default=0.0)
    if not price:
        return 0.0
    pages = 0
    for message in body["messages"]:
        for part in message.get("content") if isinstance(message.get("content"), list) else ():
            if isinstance(part, dict) and part.get("type") == "file":
                data = part["file"].get("file_data") or ""
                encoded = data.split(",", 1)[1] if data.startswith("data:") and "," in data else None
                pages += pdf_pages(base64.b64decode(encoded)) if encoded is not None else URL_DOCUMENT_PAGES
    return pages * price


def worst_case_cost(body: dict[str, Any], info: ModelInfo) -> float:
    """Prompt tokens at the prompt price, or the cache-write price where higher (images, PDFs and audio
    included: each part says its tokens), each image at the image price, plus max_tokens (reasoning
    included) at the completion price, and a web search's fee.

    A body without max_tokens (the model does not take it) is bounded by the model's own output limit.
    """
    prompt_tokens = body_prompt_tokens(body)
    max_tokens = body.get("max_tokens") or info.max_completion_tokens or info.context_length or 0
    prompt_price = max(info.prompt_price, info.cache_write_price or 0.0)  # a prompt-cache write costs more
    media = body_images(body) * info.image_price + parsing_cost(body)
    tokens = prompt_tokens * prompt_price + max_tokens * info.completion_price
    return tokens + media + info.request_price + web_search_fee_usd(body)


@dataclass
class Budget:
    """Spend so far, money reserved by requests in flight, and the cap they may not pass together."""

    max_cost_usd: float
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    exhausted: bool = False
    _waiters: list[asyncio.Future] = field(default_factory=list)

    async def reserve(self, amount: float) -> float:
        """Reserve `amount`, waiting while requests in flight hold the room it needs.

        Refused (BudgetExceeded, and every later request with it) once the spend itself leaves
        no room: then the request could pass the cap whatever the others cost.
        """
        while True:
            if self.exhausted or self.spent_usd + amount > self.max_cost_usd:
                self.exhausted = True
                self._wake()
                raise BudgetExceeded(self.max_cost_usd, self.spent_usd, amount)
            if self.spent_usd + self.reserved_usd + amount <= self.max_cost_usd:
                self.reserved_usd += amount
                return amount
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class BudgetLedger(Protocol):
    def try_reserve(self, run_id: str, amount: float) -> tuple[bool, float, float]: ...

    def settle_budget(self, run_id: str, reserved: float, actual: float) -> None: ...


class SharedBudget:
    """Budget's contract, kept in the database: every worker on the run reserves from the same row."""

    def __init__(self, ledger: BudgetLedger, run_id: str, *, poll_s: float = 0.02) -> None:
        self._ledger = ledger
        self._run_id = run_id
        self._poll_s = poll_s
        self.exhausted = False
        self._spent = 0.0  # as the database last said, for the message
        self._cap = 0.0
        # told of each reservation (+amount) and settlement (-reserved): a cluster's worker reports what it
        # holds, so that a retried block can give back what its dead worker had reserved (runner.cluster)
        self.on_change: Callable[[float], None] | None = None

    async def reserve(self, amount: float) -> float:
        while True:
            if not self.exhausted:
                reserved, self._spent, self._cap = self._ledger.try_reserve(self._run_id, amount)
                if reserved:
                    if self.on_change is not None:
                        self.on_change(amount)
                    return amount
                self.exhausted = self._spent + amount > self._cap
            if self.exhausted:
                raise BudgetExceeded(self._cap, self._spent, amount)
            await asyncio.sleep(self._poll_s)  # requests in flight (here or in other workers) hold the room

    def settle(self, reserved: float, actual: float) -> None:
        if self.on_change is not None:  # told first: a listener may know of less than is reserved, never more
            self.on_change(-reserved)
        self._ledger.settle_budget(self._run_id, reserved, actual)
