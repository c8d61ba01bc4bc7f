"""What a billed reply cost: `usage.cost`, else OpenRouter's generation record, else a catalogue estimate.

DESIGN.md §4: a billed reply never becomes a silent $0. The source of the figure is recorded
with it (`cost_source`), and an estimate is announced with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

from .catalog import Catalog
from .reply import Generation, Reply

log = logging.getLogger(__name__)


class GenerationLookup(Protocol):
    async def generation(self, generation_id: str) -> Generation | None: ...


@dataclass(frozen=True)
class Billed:
    """A billed reply whose usage carries a cost, where that cost came from, and the record looked up."""

    reply: Reply
    cost_source: str  # usage | generation | estimate | batch
    generation: Generation | None = None
    batch_id: str | None = None  # the Batch API batch that carried the request
    billed_at: str | None = None  # when the batch was finalized (ISO-8601 UTC): its rows read the same if re-read


async def bill(reply: Reply, requested_model: str, lookup: GenerationLookup, catalog: Catalog) -> Billed:
    """The reply with `usage.cost_usd` set; asks GET /generation only when `usage.cost` was missing."""
    usage = reply.usage
    if usage is None or usage.cost_usd is not None:
        return Billed(reply, "usage")
    generation = await lookup.generation(reply.generation_id) if reply.generation_id else None
    if generation is not None and generation.total_cost_usd is not None:
        looked_up = replace(
            usage,
            cost_usd=generation.total_cost_usd,
            is_byok=usage.is_byok or generation.is_byok,
            upstream_cost_usd=(
                usage.upstream_cost_usd if usage.upstream_cost_usd is not None else generation.upstream_cost_usd
            ),
        )
        return Billed(replace(reply, usage=looked_up), "generation", generation)
    info = catalog.models.get(reply.model or "") or catalog.models.get(requested_model)
    if info is None:
        estimate = 0.0
        log.warning(
            "generation %s (%s): OpenRouter sent no cost and the catalogue has no price for the model;"
            " its cost is recorded as an estimate of $0 (cost_source 'estimate')",
            reply.generation_id,
            reply.model or requested_model,
        )
    else:
        estimate = (
            usage.prompt_tokens * info.prompt_price + usage.completion_tokens * info.completion_price
        ) + info.request_price
        log.warning(
            "generation %s (%s): OpenRouter sent no cost and GET /generation gave none; recorded an estimate"
            " of $%.6f from the catalogue's prices (cost_source 'estimate')",
            reply.generation_id,
            info.id,
            estimate,
        )
    return Billed(replace(reply, usage=replace(usage, cost_usd=estimate)), "estimate", generation)
