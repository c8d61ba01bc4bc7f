"""The fake OpenRouter's Batch API (OpenRouter's `batch-quickstart.mdx`): `POST /batches` and
`GET /batches/{id}` with the real shapes and validation, results after a configurable delay, in an
order that is not the input order, billed at half the per-token price.

Validation as OpenRouter's: `endpoint` and `model` must come before `requests` in the JSON text
(400 otherwise), `custom_id`s are unique, a request's `model` matches the batch's, the batch is
text-only; on Google models every request must ask for the same `response_format`, else the batch
fails after the 202 naming the first request that disagrees. Each request takes the next scripted
`Fault` of its model, as a chat request would: errors become failed results, the others shape the reply.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .replies import error_body

if TYPE_CHECKING:
    from .openrouter import FakeOpenRouter

ENDPOINT = "/v1/chat/completions"
BATCH_PRICE_FACTOR = 0.5  # "typically billed at 50% of the model's standard per-token pricing"
TERMINAL = ("completed", "failed", "expired", "cancelled")
_ERROR_FAULTS = {"status": 500, "upstream_error": 429, "moderation": 403, "drop": 502, "garbage": 502}
_NOT_TEXT = ("image_url", "file", "input_audio", "video_url")


@dataclass
class _Batch:
    id: str
    model: str
    requests: list[dict[str, Any]]
    created_at: int
    started: float
    outcome: tuple[str, str] | None = None  # a terminal status other than completed, and its error.message
    status: str = "validating"
    results: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    finalized_at: int | None = None
    counts: dict[str, int] = field(default_factory=dict)


class FakeBatches:
    """`delay_s`: how long a batch takes from its 202 to `completed` (a third of it `validating`).
    `omit_usage`: results carry no per-result `usage` (the batch's own `usage` still says what it cost)."""

    def __init__(self, fake: FakeOpenRouter, *, delay_s: float = 0.2, omit_usage: bool = False) -> None:
        self._fake = fake
        self.delay_s = delay_s
        self.omit_usage = omit_usage
        self.batches: dict[str, _Batch] = {}
        self.submitted_requests = 0  # every request of every accepted batch
        self.billed_total = 0.0  # what completed batches were billed, in all
        self._outcomes: deque[tuple[str, str]] = deque()

    def fail_next(self, status: str = "failed", message: str = "the batch could not be processed") -> None:
        """The next accepted batch ends `failed`, `expired` or `cancelled` (no results, nothing billed)."""
        self._outcomes.append((status, message))

    def stats(self) -> dict[str, Any]:
        return {
            "batches": len(self.batches),
            "batch_requests": self.submitted_requests,
            "batch_billed": round(self.billed_total, 12),
        }

    def handle(self, method: str, path: str, raw: bytes, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of one request to `batches...`."""
        tail = path.split("batches", 1)[1].strip("/")
        if method == "POST" and not tail:
            return self._create(raw, body)
        if method == "GET" and tail and "/" not in tail:
            batch = self.batches.get(tail)
            if batch is None:
                return 404, error_body(404, f"Batch {tail} not found")
            self._advance(batch)
            return 200, _batch_object(batch)
        return 404, error_body(404, f"no route for {method} /{path}")

    def _create(self, raw: bytes, body: Any) -> tuple[int, dict[str, Any]]:
        problem = _invalid(raw, body, self._fake)
        if problem is not None:
            return 400, error_body(400, problem)
        batch = _Batch(
            id=f"batch_{secrets.token_hex(12)}",
            model=body["model"],
            requests=body["requests"],
            created_at=int(time.time()),
            started=time.monotonic(),
            outcome=self._outcomes.popleft() if self._outcomes else _mixed_formats(body),
        )
        self.batches[batch.id] = batch
        self.submitted_requests += len(batch.requests)
        for item in batch.requests:
            if self._fake._on_chat_body is not None:
                self._fake._on_chat_body({"model": batch.model, **item["body"]})
        return 202, _batch_object(batch)

    def _advance(self, batch: _Batch) -> None:
        if batch.status in TERMINAL:
            return
        elapsed = time.monotonic() - batch.started
        if elapsed < self.delay_s / 3:
            return
        if batch.outcome is not None and (batch.outcome[0] == "failed" or elapsed >= self.delay_s):
            batch.status = batch.outcome[0]
            batch.finalized_at = int(time.time())
            return
        if elapsed < self.delay_s:
            batch.status = "in_progress"
            return
        self._finish(batch)

    def _finish(self, batch: _Batch) -> None:
        results, cost, prompt, completion = [], 0.0, 0, 0
        for item in batch.requests:
            result, billed = self._answer(batch.model, item)
            usage = (result.get("response") or {}).get("body", {}).get("usage")
            if usage is not None:
                cost += billed
                prompt += usage["prompt_tokens"]
                completion += usage["completion_tokens"]
                if self.omit_usage:
                    del result["response"]["body"]["usage"]
            results.append(result)
        # Not the input order: the real API answers as requests finish.
        batch.results = results[1::2] + results[0::2]
        batch.usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cost": cost,
            "is_byok": False,
        }
        failed = sum(1 for result in results if result["error"] is not None)
        batch.counts = {"completed": len(results) - failed, "failed": failed}
        batch.status = "completed"
        batch.finalized_at = int(time.time())
        self.billed_total += cost

    def _answer(self, model: str, item: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """One request's result: a scripted error, or the reply the chat endpoint would give, at half price."""
        fake = self._fake
        result: dict[str, Any] = {"id": f"batch_req_{secrets.token_hex(8)}", "custom_id": item["custom_id"]}
        fault = fake._take_fault(model)
        if fault is not None and fault.kind in _ERROR_FAULTS:
            status = fault.status or _ERROR_FAULTS[fault.kind]
            message = fault.message or ("Provider returned error" if status >= 429 else "Request rejected")
            return {**result, "response": None, "error": {"code": status, "message": message}}, 0.0
        body = {"model": model, **item["body"]}
        reply = fake._completion(body, model, fault if fault is None or fault.kind != "hang" else None)
        if reply.status != 200:
            return {**result, "response": None, "error": reply.body.get("error")}, 0.0
        completion = reply.body
        usage = completion.get("usage")
        old_id = completion["id"]
        completion["id"] = f"gen-batch-{int(time.time())}-{secrets.token_hex(10)}"
        billed = _discount(usage, fake, old_id, completion["id"]) if usage is not None else 0.0
        response = {"status_code": 200, "request_id": f"request_{secrets.token_hex(6)}", "body": completion}
        return {**result, "response": response, "error": None}, billed


def _discount(usage: dict[str, Any], fake: FakeOpenRouter, old_id: str, new_id: str) -> float:
    """Bill a reply at the batch price under a `gen-batch-` id (its generation record moves with it);
    returns what it was billed."""
    record = fake.generations.pop(old_id, None)
    full = record["total_cost"] if record is not None else usage.get("cost", 0.0)
    discounted = round(full * BATCH_PRICE_FACTOR, 12)
    fake.total_cost += discounted - full
    if "cost" in usage:
        usage["cost"] = discounted
    details = usage.get("cost_details") or {}
    for name, value in details.items():
        details[name] = round(value * BATCH_PRICE_FACTOR, 12)
    if record is not None:
        upstream = round(record["upstream_inference_cost"] * BATCH_PRICE_FACTOR, 12)
        record.update(id=new_id, total_cost=discounted, usage=discounted, upstream_inference_cost=upstream)
        fake.generations[new_id] = record
        fake._generation_born[new_id] = fake._generation_born.pop(old_id, time.monotonic())
        fake._generation_lookups.pop(old_id, None)
    return discounted


def _invalid(raw: bytes, body: Any, fake: FakeOpenRouter) -> str | None:
    """What OpenRouter's validation says of a submission (None: accepted)."""
    if not isinstance(body, dict):
        return "expected a JSON object"
    order = list(json.loads(raw, object_pairs_hook=lambda pairs: [name for name, _ in pairs]))
    for name in ("endpoint", "model", "requests"):
        if name not in order:
            return f"`{name}` is required"
    if order.index("requests") < max(order.index("endpoint"), order.index("model")):
        return "`endpoint` and `model` must appear before `requests` in the JSON body"
    if body["endpoint"] != ENDPOINT:
        return f"the fake serves only the {ENDPOINT} endpoint, not {body['endpoint']!r}"
    if body["model"] not in {model["id"] for model in fake.models}:
        return f"{body['model']} is not a valid model ID"
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        return "`requests` must be a non-empty array"
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str) or "body" not in item:
            return f"requests[{index}] needs a string `custom_id` and a `body`"
        if item["custom_id"] in seen:
            return f"requests[{index}]: duplicate custom_id {item['custom_id']!r}"
        seen.add(item["custom_id"])
        request_model = item["body"].get("model")
        if request_model is not None and request_model != body["model"]:
            return f"requests[{index}]: model {request_model!r} does not match the batch's {body['model']!r}"
        for message in item["body"].get("messages") or ():
            content = message.get("content")
            if isinstance(content, list) and any(part.get("type") in _NOT_TEXT for part in content):
                return f"requests[{index}]: the Batch API is text-only"
    return None


def _mixed_formats(body: dict[str, Any]) -> tuple[str, str] | None:
    """Google's batch service derives one output schema per batch: a request that disagrees fails it."""
    if not body["model"].startswith("google/"):
        return None
    first = json.dumps(body["requests"][0]["body"].get("response_format"), sort_keys=True)
    for item in body["requests"][1:]:
        if json.dumps(item["body"].get("response_format"), sort_keys=True) != first:
            return "failed", (
                f"request {item['custom_id']!r} asks for a different response_format than the first request;"
                " Google models need one response_format per batch"
            )
    return None


def _batch_object(batch: _Batch) -> dict[str, Any]:
    total = len(batch.requests)
    error = {"code": batch.status, "message": batch.outcome[1]} if batch.outcome and batch.status in TERMINAL else None
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": ENDPOINT,
        "model": batch.model,
        "completion_window": "24h",
        "status": batch.status,
        "created_at": batch.created_at,
        "finalized_at": batch.finalized_at,
        "request_counts": {
            "total": total,
            "completed": batch.counts.get("completed", 0),
            "failed": batch.counts.get("failed", 0),
        },
        "usage": batch.usage,
        "results": batch.results,
        "error": error,
    }
