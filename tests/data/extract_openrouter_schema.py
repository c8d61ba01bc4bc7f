"""Regenerate openrouter_chat_request.schema.json and openrouter_responses.schema.json from
OpenRouter's published openapi.yaml.

Usage: python tests/data/extract_openrouter_schema.py ../shared/openrouter/openapi.yaml
Keeps ChatRequest (and, in the second file, the reply bodies the fake sends) and every component
they reach, as JSON Schema 2020-12 documents.
"""

import json
import sys
from pathlib import Path

import yaml


def reachable(components: dict, root: str) -> dict:
    seen: dict = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen[name] = components[name]
        pending.extend(_refs(components[name]))
    return seen


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value.rsplit("/", 1)[-1])
            else:
                found.extend(_refs(value))
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _rewrite(node):
    if isinstance(node, dict):
        return {
            key: (value.replace("#/components/schemas/", "#/$defs/") if key == "$ref" else _rewrite(value))
            for key, value in node.items()
            if key not in ("discriminator", "example", "examples")
        }
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node


RESPONSES = (
    "ChatResult",
    "GenerationResponse",
    "BadRequestResponse",
    "ForbiddenResponse",
    "NotFoundResponse",
    "TooManyRequestsResponse",
    "InternalServerResponse",
    "BadGatewayResponse",
    "ServiceUnavailableResponse",
)


def main(openapi_path: str) -> None:
    spec = yaml.safe_load(Path(openapi_path).read_text(encoding="utf-8"))
    components = spec["components"]["schemas"]
    _write(components, ("ChatRequest",), "openrouter_chat_request.schema.json", {"$ref": "#/$defs/ChatRequest"})
    _write(components, RESPONSES, "openrouter_responses.schema.json", {})


def _write(components: dict, roots: tuple[str, ...], name: str, extra: dict) -> None:
    reached: dict = {}
    for root in roots:
        reached.update(reachable(components, root))
    defs = _rewrite(reached)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"{', '.join(roots)} from OpenRouter's openapi.yaml (OpenRouterTeam/typescript-sdk "
            ".speakeasy/in.openapi.yaml, blob 8e7075f312fbb92398a76dba599309d8d1383906, "
            "Apache-2.0 repository, spec info.license MIT); examples and discriminators removed."
        ),
        **extra,
        "$defs": defs,
    }
    out = Path(__file__).with_name(name)
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out} with {len(defs)} definitions")


if __name__ == "__main__":
    main(sys.argv[1])
