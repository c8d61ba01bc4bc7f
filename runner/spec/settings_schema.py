"""OpenRouter's published request schema for the settings a pipeline sends as written (sampling,
`plugins`, `provider`), shipped in runner/data/openrouter_settings.schema.json and made available
to the file's schema, which refers to it: a typo inside `plugins` or `provider` is a load error
naming the key, the file and the line, as any other schema error is."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from referencing import Registry, Resource

# Read through importlib.resources, like the file's schema, so an installed wheel has it.
SETTINGS_SCHEMA_PATH = files("runner") / "data" / "openrouter_settings.schema.json"

# ChatRequest fields sent as the pipeline writes them; the sampling ones only to models that list them.
SAMPLING = (
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
)
REQUEST_FIELDS = (*SAMPLING, "transforms", "plugins")


@cache
def settings_schema() -> dict[str, Any]:
    return json.loads(SETTINGS_SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def registry() -> Registry:
    """What `$ref`s to openrouter_settings.schema.json in the file's schema resolve to."""
    schema = settings_schema()
    return Registry().with_resource(schema["$id"], Resource.from_contents(schema))
