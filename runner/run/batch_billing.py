"""What each result of a finished batch cost, so that a batch's cost rows add up to what it was billed.

A result's own `usage.cost` first; a result without one is looked up (`GET /generation`'s
`total_cost`); what is still unknown gets the batch's `usage.cost` less the known costs, shared out
by tokens (the last share takes the remainder, so the sum is exact). Without a batch total either,
the catalogue's prices estimate it, with a warning. Also what the same tokens would have cost through
the normal API, for `pipeline runs`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..chat.batches import BatchState
from ..chat.billing import Billed, GenerationLookup
from ..chat.caching import cache_saving
from ..chat.catalog import Catalog
from ..chat.reply import Reply, Usage
from .results import utc_now

log = logging.getLogger(__name__)

LOOKUPS_IN_FLIGHT = 16


@dataclass(frozen=True)
class BatchBilling:
    replies: dict[str, Billed]  # custom id -> the billed reply (200 results only)
    billed_usd: float  # what the batch's rows add up to
    normal_usd: float | None  # the same tokens at the catalogue's normal prices, less the same prompt-caching
    # discount (None: a model it does not price, or cached tokens whose read price it does not list)


async def bill_batch(
    state: BatchState,
    model: str,
    prompt_estimates: dict[str, int],
    catalog: Catalog,
    lookup: GenerationLookup,
    latency_ms: int,
) -> BatchBilling:
    billed_at = _iso(state.finalized_at) if state.finalized_at is not None else utc_now()
    answered = [result for result in state.results if result.status_code == 200 and result.body is not None]
    replies = {result.custom_id: Reply.from_body(result.body, latency_ms) for result in answered}
    known: dict[str, Billed] = {}
    unknown: list[str] = []
    slots = asyncio.Semaphore(LOOKUPS_IN_FLIGHT)

    async def price(custom: str) -> None:
        reply = replies[custom]
        if reply.usage is not None and reply.usage.cost_usd is not None:
            known[custom] = Billed(reply, "batch", batch_id=state.id, billed_at=billed_at)
            return
        async with slots:
            found = await lookup.generation(reply.generation_id) if reply.generation_id else None
        if found is not None and found.total_cost_usd is not None:
            usage = reply.usage or Usage(
                prompt_tokens=found.native_tokens_prompt or 0,
                completion_tokens=found.native_tokens_completion or 0,
                reasoning_tokens=found.native_tokens_reasoning or 0,
                cached_tokens=found.native_tokens_cached or 0,
                total_tokens=(found.native_tokens_prompt or 0) + (found.native_tokens_completion or 0),
            )
            usage = replace(usage, cost_usd=found.total_cost_usd, is_byok=usage.is_byok or found.is_byok)
            known[custom] = Billed(replace(reply, usage=usage), "generation", found, state.id, billed_at)
        else:
            unknown.append(custom)

    await asyncio.gather(*(price(result.custom_id) for result in answered))
    unknown.sort(key=list(replies).index)  # the results' order, whatever order the lookups finished in
    billed = dict(known)
    if unknown:
        billed.update(_shared(state, model, unknown, replies, known, prompt_estimates, catalog, billed_at))
    total = sum(item.reply.usage.cost_usd or 0.0 for item in billed.values())
    if state.usage is not None and state.usage.cost_usd is not None and abs(total - state.usage.cost_usd) > 1e-9:
        log.warning(
            "batch %s was billed $%.9f but its results add up to $%.9f (%d of them without a cost)",
            state.id, state.usage.cost_usd, total, len(unknown),
        )  # fmt: skip
    return BatchBilling(billed, total, _normal_cost(billed, model, catalog, prompt_estimates))


def _shared(state, model, unknown, replies, known, prompt_estimates, catalog, billed_at) -> dict[str, Billed]:
    """The batch's bill less the known costs, shared out by tokens; an estimate when the batch has no bill."""
    weights = {custom: _tokens(replies[custom], prompt_estimates.get(custom, 0)) for custom in unknown}
    info = catalog.models.get(model)
    shares: dict[str, float] = {}
    if state.usage is not None and state.usage.cost_usd is not None:
        rest = state.usage.cost_usd - sum(item.reply.usage.cost_usd or 0.0 for item in known.values())
        if rest < 0:
            log.warning("batch %s: its results' own costs exceed its bill; the rest is taken as $0", state.id)
            rest = 0.0
        whole = sum(weights.values())
        for custom in unknown[:-1]:
            shares[custom] = rest * (weights[custom] / whole if whole else 1 / len(unknown))
        shares[unknown[-1]] = rest - sum(shares.values())
        source = "batch"
    else:
        for custom in unknown:
            prompt, completion = _split(replies[custom], prompt_estimates.get(custom, 0))
            shares[custom] = (prompt * info.prompt_price + completion * info.completion_price) if info else 0.0
        source = "estimate"
        log.warning(
            "batch %s: %d result(s) came without a cost, GET /generation had none and the batch no bill;"
            " recorded estimates from the catalogue's prices (cost_source 'estimate')",
            state.id, len(unknown),
        )  # fmt: skip
    billed = {}
    for custom in unknown:
        reply = replies[custom]
        usage = replace(reply.usage or Usage(), cost_usd=shares[custom])
        billed[custom] = Billed(replace(reply, usage=usage), source, batch_id=state.id, billed_at=billed_at)
    return billed


def _split(reply: Reply, prompt_estimate: int) -> tuple[int, int]:
    """Prompt and completion tokens: the reply's own, else estimated (the prompt from its body, the
    completion from its text at about four bytes a token)."""
    if reply.usage is not None and reply.usage.total_tokens:
        return reply.usage.prompt_tokens, reply.usage.completion_tokens
    return prompt_estimate, max(1, len((reply.content or "").encode("utf-8")) // 4)


def _tokens(reply: Reply, prompt_estimate: int) -> int:
    prompt, completion = _split(reply, prompt_estimate)
    return prompt + completion


def _normal_cost(billed: dict[str, Billed], model: str, catalog: Catalog, prompt_estimates) -> float | None:
    """The same tokens at the catalogue's normal prices (tokens estimated where the result had none), with
    the cache reads and writes the results reported priced as the normal API prices them: the batch's
    saving is then the Batch API's alone, not prompt caching's too."""
    info = catalog.models.get(model)
    if info is None:
        return None
    total = 0.0
    for custom, item in billed.items():
        prompt, completion = _split(item.reply, prompt_estimates.get(custom, 0))
        usage = item.reply.usage
        saving = cache_saving(info, usage.cached_tokens, usage.cache_write_tokens) if usage is not None else 0.0
        if saving is None:
            return None
        total += prompt * info.prompt_price + completion * info.completion_price + info.request_price - saving
    return total


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
