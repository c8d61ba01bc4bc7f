"""What `--retry-failed` asks OpenRouter again when a record that failed runs again, rather than serve
from the response cache (which would fail it the same way).

When every step that failed is a chat step (no tools) that failed on its own replies (bad JSON, the
wrong shape, a cut-off reply, a provider that could not answer), only the cached replies whose check
failed are asked again: the steps before and a map step's elements that were answered well come from
the cache and are not paid twice. Any other failure can come from replies that passed their check: a
code step rejecting a value, tool rounds that ran out, a `for_each` list too long, a template or an
attachment path built from an earlier reply, a 400 or a content filter set off by what an earlier step
wrote. Then every request of the record is asked afresh. Replies asked again are kept as others are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from ..outcomes import FailureKind
from ..spec.model import ChatStep, PipelineSpec
from .results import CacheEntry

# A chat step's failures that its own replies (or their absence) explain.
OWN_REPLIES = frozenset(
    {
        FailureKind.INVALID_JSON,
        FailureKind.SCHEMA_MISMATCH,
        FailureKind.LENGTH,
        FailureKind.UNAVAILABLE,
        FailureKind.NO_ENDPOINTS,
        FailureKind.ERROR,
    }
)


class Afresh(Enum):
    NOTHING = "nothing"  # the cache serves every reply it holds
    FAILED_REPLIES = "failed replies"  # it serves those that passed their check
    EVERYTHING = "everything"  # it serves none


def afresh_for(
    spec: PipelineSpec, stored: Mapping[str, Any], failed_steps: Iterable[tuple[str, str | None]] = ()
) -> Afresh:
    """For a record that failed: what to ask again, by the steps that failed and why. `stored` is its row
    (the first failure, in `error_json`); `failed_steps` the (step, kind) of each of its failed steps."""
    try:
        error = json.loads(stored.get("error_json") or "null")
    except ValueError:
        error = None
    failures = list(failed_steps)
    if isinstance(error, dict):
        failures.append((error.get("step"), error.get("kind")))
    steps = {step.id: step for step in spec.steps}
    own = [
        kind in OWN_REPLIES and isinstance(steps.get(step_id), ChatStep) and not steps[step_id].tools
        for step_id, kind in failures
    ]
    return Afresh.FAILED_REPLIES if own and all(own) else Afresh.EVERYTHING


def serves(afresh: Afresh, entry: CacheEntry) -> bool:
    """Whether a cached reply is used while `afresh` holds."""
    return afresh is Afresh.NOTHING or (afresh is Afresh.FAILED_REPLIES and entry.verdict.ok)
