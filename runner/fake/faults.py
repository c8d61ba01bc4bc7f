"""The reply shapes and failures a test scripts on the fake OpenRouter: `fake.enqueue(Fault(kind, ...))`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .replies import BYOK_FEE_FRACTION, PLUGIN_FEE_USD

FAULT_KINDS = (
    "status",
    "upstream_error",
    "moderation",
    "drop",
    "hang",
    "garbage",
    "finish",
    "error_in_body",
    "choice_error",
    "empty_choices",
    "tool_calls",
    "content",
    "no_usage",
    "no_cost",
    "byok",
    "plugin_fee",
    "served_model",
    "stream_error",
    "provider_fallback",
)


@dataclass
class Fault:
    """One scripted reply shape, used `times` times for requests to `model` (any model when None).

    Errors before any billing (429/5xx fall through to the next model of `models`, as OpenRouter does):
      "status"          HTTP `status` (default 500) with OpenRouter's own error body {"error": {code, message}};
                        `message`, `metadata`, `retry_after` (the Retry-After header) as given.
      "upstream_error"  HTTP `status` (default 429) an upstream provider returned: `metadata` defaults to
                        {"raw": the provider's text, "provider_name": ...}, message "Provider returned error".
      "moderation"      HTTP 403 with metadata {"reasons": `reasons`, "flagged_input": the prompt's text
                        (cut at 100 characters), "provider_name", "model_slug"}.
      "drop"            the connection closes without a reply.
      "hang"            no reply for `delay_s`, then the normal reply.
      "garbage"         a 200 whose body is HTML, not JSON.
    Billed 200 replies (usage, a generation record):
      "finish"          `finish_reason` (default "error"; "content_filter" empties the content) and
                        `native_finish_reason` (default: the provider's word for it).
      "error_in_body"   a top-level `error` object beside the choices, finish_reason "error".
      "choice_error"    `choices[0].error` = {code: `status` or 502, message, metadata}, finish_reason
                        "error", content "".
      "empty_choices"   `choices: []`, still billed.
      "tool_calls"      only `tool_calls` (content null, finish_reason "tool_calls"): one call of the
                        request's tool named `tool_name` (default: its first tool), arguments made
                        from that tool's parameters schema (or this exact `arguments` text).
      "content"         this exact `content`.
      "no_cost"         usage with tokens but without `cost`/`cost_details`; `/generation` has total_cost.
      "byok"            usage.is_byok true, `cost` OpenRouter's fee (`fee_usd`, default 5 % of the price),
                        cost_details.upstream_inference_cost the provider's price.
      "plugin_fee"      `cost` = the token price + `fee_usd` (default PLUGIN_FEE_USD), above the upstream cost.
      "served_model"    the reply (and its generation) names `served_model` (default: the dated id of the
                        requested model, DATED_IDS) instead of the requested id.
      "stream_error"    an error from the provider mid-reply: streamed (`stream: true`), half the text, then an
                        error chunk (`error` {code 502, `message`}, finish_reason "error", the usage) and no
                        [DONE]; unstreamed, the same as "error_in_body".
      "provider_fallback" a normal reply whose generation record lists a provider that failed first with
                        `status` (default 429), as OpenRouter's own fallback between providers leaves it.
    "no_usage" is a 200 without usage (not billed, no generation).
    """

    kind: str
    status: int | None = None
    message: str = ""
    retry_after: str | None = None
    metadata: dict[str, Any] | None = None
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    content: str | None = None
    served_model: str | None = None
    fee_usd: float | None = None
    reasons: tuple[str, ...] = ("violence",)
    tool_name: str | None = None
    arguments: str | None = None
    delay_s: float = 5.0
    model: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known kinds: {', '.join(FAULT_KINDS)}")


def charged(fault: Fault | None, price: float) -> float:
    """What OpenRouter bills: the price, only its fee for BYOK, the price plus a plugin's fee."""
    kind = fault.kind if fault is not None else None
    if kind == "byok":
        return fault.fee_usd if fault.fee_usd is not None else round(price * BYOK_FEE_FRACTION, 12)
    if kind == "plugin_fee":
        return round(price + (fault.fee_usd if fault.fee_usd is not None else PLUGIN_FEE_USD), 12)
    return price


def error_status(fault: Fault) -> int | None:
    """The HTTP status of an error fault (None for faults that answer 200)."""
    if fault.kind == "status":
        return fault.status or 500
    if fault.kind == "upstream_error":
        return fault.status or 429
    if fault.kind == "moderation":
        return 403
    return None
