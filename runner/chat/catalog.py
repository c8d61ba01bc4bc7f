"""The model catalogue (GET /models): prices, limits and supported parameters, cached on disk."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import CallError, ConfigurationError
from ..spec.model_ids import base_model
from .request import OutputMode

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 24 * 3600


@dataclass(frozen=True)
class ModelInfo:
    id: str
    prompt_price: float  # USD per token
    completion_price: float
    request_price: float
    context_length: int | None
    max_completion_tokens: int | None
    supported_parameters: frozenset[str]
    name: str = ""
    input_modalities: tuple[str, ...] = ()  # text, image, file, audio, video
    image_price: float = 0.0  # USD per input image (`pricing.image`), on top of its tokens
    cache_read_price: float | None = None  # USD per cached prompt token read (`input_cache_read`); None: not listed
    cache_write_price: float | None = None  # USD per prompt token written to the cache (`input_cache_write`)

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> ModelInfo:
        pricing = entry.get("pricing") or {}
        top = entry.get("top_provider") or {}
        architecture = entry.get("architecture") or {}
        return cls(
            id=entry["id"],
            prompt_price=_price(pricing.get("prompt")),
            completion_price=_price(pricing.get("completion")),
            request_price=_price(pricing.get("request")),
            context_length=entry.get("context_length"),
            max_completion_tokens=top.get("max_completion_tokens"),
            supported_parameters=frozenset(entry.get("supported_parameters") or ()),
            name=entry.get("name") if isinstance(entry.get("name"), str) else "",
            input_modalities=tuple(
                item for item in architecture.get("input_modalities") or () if isinstance(item, str)
            ),
            image_price=_price(pricing.get("image")),
            cache_read_price=_listed_price(pricing.get("input_cache_read")),
            cache_write_price=_listed_price(pricing.get("input_cache_write")),
        )


def _price(value: Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0


def _listed_price(value: Any) -> float | None:
    return None if value is None else _price(value)


class ModelTable(Mapping[str, ModelInfo]):
    """The catalogue's models by id; a variant (`:online`, `:nitro`, ...) the catalogue does not list
    is found as its base model, so prices, limits and parameters of `x:nitro` are those of `x`."""

    def __init__(self, models: Mapping[str, ModelInfo]) -> None:
        self._models = models

    def __getitem__(self, model: str) -> ModelInfo:
        found = self._models.get(model)
        if found is None:
            found = self._models[base_model(model)]
        return found

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and (model in self._models or base_model(model) in self._models)

    def __iter__(self):
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelInfo]
    source: str = "live"  # where it came from: live (GET /models), cache (the disk cache), bundled (the snapshot)

    def __post_init__(self) -> None:
        if not isinstance(self.models, ModelTable):
            object.__setattr__(self, "models", ModelTable(self.models))

    def output_mode(self, model: str, has_schema: bool) -> OutputMode:
        """Strict structured outputs where the model has them; JSON mode, or the prompt alone, otherwise."""
        if not has_schema:
            return OutputMode.TEXT
        info = self.models.get(model)
        if info is None or not info.supported_parameters:
            return OutputMode.JSON_SCHEMA  # unknown: ask for it; require_parameters routes accordingly
        if "structured_outputs" in info.supported_parameters:
            return OutputMode.JSON_SCHEMA
        if "response_format" in info.supported_parameters:
            return OutputMode.JSON_OBJECT
        return OutputMode.PROMPT


EMPTY_CATALOG = Catalog(MappingProxyType({}), "none")


def catalog_from_api(payload: Any, source: str = "live") -> Catalog:
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return EMPTY_CATALOG
    models = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            models[entry["id"]] = ModelInfo.from_api(entry)
    return Catalog(MappingProxyType(models), source)


# A Traversable, not a file path: read through importlib.resources, it is found inside any installed wheel.
SNAPSHOT_PATH = files("runner") / "data" / "models.json"


def bundled_catalog() -> Catalog:
    """The catalogue snapshot shipped with the runner, for when there is no network and no cache."""
    return catalog_from_api(json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8")), "bundled")


def offline_catalog(base_url: str, cache_dir: str | None = None) -> Catalog:
    """For checks that must not touch the network: the disk cache at any age, else the bundled snapshot."""
    return _cached_or_bundled(cache_path_for(base_url, cache_dir))


def _cached_or_bundled(cache_path: Path | None) -> Catalog:
    cached = _read_cache(cache_path, float("inf")) if cache_path is not None else None
    return catalog_from_api(cached, "cache") if cached is not None else bundled_catalog()


def cache_path_for(base_url: str, cache_dir: str | None = None) -> Path:
    """The catalogue's cache file for this API in `cache_dir` (`Settings.cache_dir`; None: ~/.cache/pipeline)."""
    folder = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "pipeline"
    return folder / f"models-{sha256(base_url.encode()).hexdigest()[:16]}.json"


async def load_catalog(client, cache_path: Path | None, ttl_s: float = DEFAULT_TTL_S) -> Catalog:
    """The catalogue from the disk cache when fresh, else from GET /models (then cached).

    When the endpoint fails (offline, an outage) the disk cache serves at any age, else the
    snapshot bundled with the runner. A 404 is a wrong base URL, whatever its body: OpenRouter always
    serves its model list, so every request of the run would fail the same way.
    """
    if cache_path is not None:
        cached = _read_cache(cache_path, ttl_s)
        if cached is not None:
            return catalog_from_api(cached, "cache")
    try:
        payload = await client.get_json("models")
    except CallError as exc:
        if exc.status == 404:
            raise ConfigurationError(
                f"GET {client.base_url}models answered HTTP 404: there is no OpenRouter API at {client.base_url};"
                " check OPENROUTER_BASE_URL"
            ) from None
        log.warning("could not fetch the model catalogue (%s); using the disk cache or the bundled snapshot", exc)
        return _cached_or_bundled(cache_path)
    if cache_path is not None:
        _write_cache(cache_path, payload)
    return catalog_from_api(payload)


def _read_cache(path: Path, ttl_s: float) -> Any:
    try:
        if time.time() - path.stat().st_mtime > ttl_s:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_cache(path: Path, payload: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        log.info("could not cache the model catalogue at %s: %s", path, exc)
