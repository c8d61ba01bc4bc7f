"""The fake's view of a request's images, documents and audio: checked as a provider would (a known
type, valid base64) and priced (tokens for each, each image at the model's `pricing.image`, and each PDF
page when the file-parser plugin's engine is paid per page)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from ..plan.attachments import PAGE_PRICE_USD, pdf_pages

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
DOCUMENT_TYPES = ("application/pdf",)
AUDIO_FORMATS = ("wav", "mp3", "flac", "m4a", "ogg", "aiff", "aac", "pcm16", "pcm24")
IMAGE_TOKENS = 258  # what Gemini bills for an image up to 384 pixels a side
URL_DOCUMENT_TOKENS = 1000  # a document fetched by URL: the fake does not fetch it
_DATA_URL = re.compile(r"^data:([\w.+/-]+);base64,(.*)$", re.DOTALL)


def problem(body: Mapping[str, Any]) -> str | None:
    """Why a provider would refuse the request's content parts (an OpenRouter 400 message), or None."""
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else ():
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "image_url":
                found = _url_problem((part.get("image_url") or {}).get("url"), IMAGE_TYPES, "image")
            elif kind == "file":
                found = _url_problem((part.get("file") or {}).get("file_data"), DOCUMENT_TYPES, "file")
            elif kind == "input_audio":
                found = _audio_problem(part.get("input_audio") or {})
            elif kind == "text":
                found = None
            else:
                found = f"unknown content part type {kind!r}"
            if found is not None:
                return found
    return None


def media_cost(body: Mapping[str, Any], pricing: Mapping[str, Any]) -> tuple[int, float]:
    """Prompt tokens for the request's images, documents and audio, and what its images (`pricing.image`)
    and the file-parser plugin's pages (mistral-ocr's per-page price) cost on their own."""
    tokens, images, pages = 0, 0, 0
    for message in body.get("messages") or ():
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            kind = part.get("type")
            if kind == "image_url":
                tokens, images = tokens + IMAGE_TOKENS, images + 1
            elif kind == "file":
                data = _DATA_URL.match(part["file"].get("file_data") or "")
                decoded = _decoded(data.group(2)) if data else None
                tokens += len(decoded) // 4 if decoded is not None else URL_DOCUMENT_TOKENS
                pages += pdf_pages(decoded) if decoded is not None else 1
            elif kind == "input_audio":
                tokens += len(_decoded(part["input_audio"]["data"]) or b"") // 500
    parsers = [plugin for plugin in body.get("plugins") or () if plugin.get("id") == "file-parser"]
    engines = [(plugin.get("pdf") or {}).get("engine") for plugin in parsers]
    page_price = max((PAGE_PRICE_USD.get(engine, 0.0) for engine in engines), default=0.0)
    return tokens, images * float(pricing.get("image") or 0) + pages * page_price


def _url_problem(url: Any, mime_types: tuple[str, ...], what: str) -> str | None:
    if not isinstance(url, str) or not url:
        return f"{what} part without a URL"
    if url.startswith(("https://", "http://")):
        return None
    data = _DATA_URL.match(url)
    if data is None:
        return f"{what} URL must be an http(s) URL or a base64 data: URL"
    if data.group(1) not in mime_types:
        return f"unsupported {what} type {data.group(1)!r}"
    return None if _decoded(data.group(2)) is not None else f"{what} data: URL is not valid base64"


def _audio_problem(audio: Mapping[str, Any]) -> str | None:
    if audio.get("format") not in AUDIO_FORMATS:
        return f"unsupported audio format {audio.get('format')!r}"
    return None if _decoded(audio.get("data")) is not None else "input_audio data is not valid base64"


def _decoded(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
