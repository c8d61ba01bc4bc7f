"""What `--retry-failed` asks OpenRouter again when a record that failed runs again, rather than serve
from the response cache (which would fail it the same way).

A chat step fails on its own replies: only the cached replies whose check failed are asked again, so
the steps before it and a map step's elements that were answered well come from the cache and are not
paid twice. A code step or a tool-calling step can fail on replies that passed their check (a function
that rejects a value, tool rounds that ran out): then every request of the record is asked afresh.
Replies asked again are kept as any others are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

from ..spec.model import ChatStep, PipelineSpec
from .results import CacheEntry


class Afresh(Enum):
    NOTHING = "nothing"  # the cache serves every reply it holds
    FAILED_REPLIES = "failed replies"  # it serves those that passed their check
    EVERYTHING = "everything"  # it serves none


def afresh_for(spec: PipelineSpec, stored: Mapping[str, Any]) -> Afresh:
    """For a record that failed (its stored row): what to ask again, by the step that failed."""
    try:
        error = json.loads(stored.get("error_json") or "{}")
    except ValueError:
        error = None
    step_id = error.get("step") if isinstance(error, dict) else None
    step = next((step for step in spec.steps if step.id == step_id), None)
    if isinstance(step, ChatStep) and not step.tools:
        return Afresh.FAILED_REPLIES
    return Afresh.EVERYTHING


def serves(afresh: Afresh, entry: CacheEntry) -> bool:
    """Whether a cached reply is used while `afresh` holds."""
    return afresh is Afresh.NOTHING or (afresh is Afresh.FAILED_REPLIES and entry.verdict.ok)
