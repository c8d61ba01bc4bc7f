"""The hard cost cap: reserve a request's worst case before sending it, settle with `usage.cost`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .catalog import ModelInfo
from .errors import BudgetExceeded

BYTES_PER_TOKEN = 3.0  # conservative: English averages ~4 characters a token, most scripts more bytes
TOKENS_PER_MESSAGE = 8


def estimate_prompt_tokens(messages: list[dict[str, Any]] | tuple[dict[str, Any], ...], extra: Any = None) -> int:
    """An upper-leaning estimate of the prompt tokens, from the UTF-8 size of what is sent."""
    size = sum(len(str(message.get("content", "")).encode("utf-8")) for message in messages)
    if extra is not None:
        size += len(json.dumps(extra, ensure_ascii=False).encode("utf-8"))
    return math.ceil(size / BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def worst_case_cost(body: dict[str, Any], info: ModelInfo) -> float:
    """Prompt tokens at the prompt price plus max_tokens (reasoning included) at the completion price."""
    prompt_tokens = estimate_prompt_tokens(body["messages"], body.get("response_format"))
    return prompt_tokens * info.prompt_price + body.get("max_tokens", 0) * info.completion_price + info.request_price


@dataclass
class Budget:
    """Spend so far, money reserved by requests in flight, and the cap they may not pass together."""

    max_cost_usd: float
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    exhausted: bool = False

    def reserve(self, amount: float) -> float:
        """Reserve `amount` or raise BudgetExceeded; synchronous, so concurrent tasks cannot race it."""
        if self.exhausted or self.spent_usd + self.reserved_usd + amount > self.max_cost_usd:
            self.exhausted = True
            raise BudgetExceeded(
                f"--max-cost ${self.max_cost_usd:.4f} reached: ${self.spent_usd:.6f} spent, "
                f"${self.reserved_usd:.6f} reserved by requests in flight, the next request could cost "
                f"${amount:.6f}; finished records are kept, resume with a higher --max-cost"
            )
        self.reserved_usd += amount
        return amount

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual
