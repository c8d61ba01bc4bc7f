"""Chat messages as frozen values made of parts, each knowing its wire form and its token estimate.

The wire form is OpenRouter's (OpenAI's) chat-completions format. A message whose parts are all
plain text parts (no cache breakpoint) is sent as one string `content`, exactly as bodies were written before parts
existed: the response cache is keyed by a hash of the body, so those bytes must not change.

Token estimates lean high and are fractional: the budget adds them up and rounds the sum once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

BYTES_PER_TOKEN = 3.0  # conservative: English averages ~4 characters a token, most scripts more bytes
TOKENS_PER_MESSAGE = 8
# An image costs what its pixels cost, not its bytes. 1,600 tokens covers a 1.15-megapixel image at
# Anthropic's rate (width * height / 750) and OpenAI's high-detail 1024x1024 (765): a flat estimate
# that leans high, since the image is not decoded to measure it.
IMAGE_TOKENS = 1600
# Audio is billed by duration: about 32 tokens a second (Gemini) against 16 KB a second of
# 128 kbit/s audio, so 250 bytes a token leans high for compressed formats.
AUDIO_BYTES_PER_TOKEN = 250.0
# A document sent by URL is fetched by OpenRouter, so its size is unknown here: counted as a long one
# (some 25 pages of dense text), so that a cost cap is not passed by a PDF link.
DOCUMENT_URL_TOKENS = 25_000

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class CacheControl:
    """Prompt caching breakpoint on a text part (`{"type": "ephemeral", "ttl": "1h"}` on the wire)."""

    ttl: str | None = None  # "5m" or "1h"; None: the provider's default

    def to_wire(self) -> dict[str, str]:
        return {"type": "ephemeral"} if self.ttl is None else {"type": "ephemeral", "ttl": self.ttl}


@dataclass(frozen=True)
class TextPart:
    text: str
    cache_control: CacheControl | None = None
    varies: bool = False  # rendered from per-record data: no cache breakpoint may close it or follow it

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "text", "text": self.text}
        if self.cache_control is not None:
            wire["cache_control"] = self.cache_control.to_wire()
        return wire

    def estimated_tokens(self) -> float:
        return len(self.text.encode("utf-8")) / BYTES_PER_TOKEN


@dataclass(frozen=True)
class ImagePart:
    """An image by URL: `https://...` or a `data:image/png;base64,...` URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None

    def to_wire(self) -> dict[str, Any]:
        image: dict[str, str] = {"url": self.url}
        if self.detail is not None:
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}

    def estimated_tokens(self) -> float:
        return IMAGE_TOKENS


@dataclass(frozen=True)
class FilePart:
    """A document (a PDF, say): `data` is a `data:application/pdf;base64,...` URL or an https URL."""

    filename: str
    data: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "file", "file": {"filename": self.filename, "file_data": self.data}}

    def estimated_tokens(self) -> float:
        """By the decoded size, as if every byte were text; a document behind a URL as a long one."""
        if not self.data.startswith("data:"):
            return DOCUMENT_URL_TOKENS
        return _decoded_size(self.data) / BYTES_PER_TOKEN


@dataclass(frozen=True)
class AudioPart:
    """Audio sent inline: `data` is base64, `format` the container (`wav`, `mp3`, ...)."""

    data: str
    format: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "input_audio", "input_audio": {"data": self.data, "format": self.format}}

    def estimated_tokens(self) -> float:
        return _decoded_size(self.data, bare_base64=True) / AUDIO_BYTES_PER_TOKEN


@dataclass(frozen=True)
class ToolCallPart:
    """A function call the assistant asked for; `arguments` is the JSON text exactly as the model wrote it."""

    id: str
    name: str
    arguments: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def estimated_tokens(self) -> float:
        return len((self.name + self.arguments).encode("utf-8")) / BYTES_PER_TOKEN


@dataclass(frozen=True)
class ToolResultPart:
    """What a tool returned for the call `tool_call_id`: the whole content of a `tool` message."""

    tool_call_id: str
    content: str

    def to_wire(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.tool_call_id, "content": self.content}

    def estimated_tokens(self) -> float:
        return len(self.content.encode("utf-8")) / BYTES_PER_TOKEN


ContentPart = TextPart | ImagePart | FilePart | AudioPart
Part = ContentPart | ToolCallPart | ToolResultPart
_CONTENT = (TextPart, ImagePart, FilePart, AudioPart)


@dataclass(frozen=True)
class Message:
    """One turn. System messages hold text; tool calls come from the assistant; a tool result is a
    `tool` message of its own. `reasoning_details` (JSON text, as a reply sent it) goes back with an
    assistant turn so reasoning models can continue from it."""

    role: Role
    parts: tuple[Part, ...]
    reasoning_details: str | None = None

    def __post_init__(self) -> None:
        for part in self.parts:
            if isinstance(part, ToolCallPart) and self.role != "assistant":
                raise ValueError(f"a tool call belongs to an assistant message, not a {self.role} message")
            if isinstance(part, ToolResultPart) != (self.role == "tool"):
                raise ValueError("a tool result is the one part of a `tool` message")
            if self.role == "system" and not isinstance(part, TextPart):
                raise ValueError("a system message holds text parts only")
        if self.role == "tool" and len(self.parts) != 1:
            raise ValueError("a `tool` message holds exactly one tool result")

    @classmethod
    def text_message(cls, role: Role, text: str) -> Message:
        return cls(role, (TextPart(text),))

    @property
    def text(self) -> str:
        """The text parts joined: what a person would read of this turn."""
        return "".join(part.text for part in self.parts if isinstance(part, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCallPart, ...]:
        return tuple(part for part in self.parts if isinstance(part, ToolCallPart))

    def to_wire(self) -> dict[str, Any]:
        if self.role == "tool":
            return self.parts[0].to_wire()
        content = [part for part in self.parts if isinstance(part, _CONTENT)]
        wire: dict[str, Any] = {"role": self.role}
        if content and all(isinstance(part, TextPart) and part.cache_control is None for part in content):
            wire["content"] = "".join(part.text for part in content)  # today's body, byte for byte
        elif content:
            wire["content"] = [part.to_wire() for part in content]
        else:
            wire["content"] = None  # an assistant turn that only called tools
        calls = self.tool_calls
        if calls:
            wire["tool_calls"] = [call.to_wire() for call in calls]
        if self.reasoning_details is not None:
            wire["reasoning_details"] = json.loads(self.reasoning_details)
        return wire

    def estimated_tokens(self) -> float:
        return TOKENS_PER_MESSAGE + sum(part.estimated_tokens() for part in self.parts)

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Message:
        """The inverse of to_wire, for bodies read back (the budget's estimate, cassettes)."""
        role = wire["role"]
        if role == "tool":
            return cls(role, (ToolResultPart(str(wire.get("tool_call_id", "")), _plain(wire.get("content"))),))
        content = wire.get("content")
        parts: list[Part] = []
        if isinstance(content, list):
            parts.extend(_part_from_wire(item) for item in content)
        elif content is not None:
            parts.append(TextPart(str(content)))
        for call in wire.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(
                ToolCallPart(str(call.get("id", "")), str(function.get("name", "")), function.get("arguments") or "")
            )
        details = wire.get("reasoning_details")
        return cls(role, tuple(parts), json.dumps(details, ensure_ascii=False) if details is not None else None)


def _part_from_wire(item: dict[str, Any]) -> ContentPart:
    kind = item.get("type")
    if kind == "image_url":
        image = item["image_url"]
        return ImagePart(image["url"], image.get("detail"))
    if kind == "file":
        return FilePart(item["file"].get("filename", ""), item["file"].get("file_data", ""))
    if kind == "input_audio":
        return AudioPart(item["input_audio"]["data"], item["input_audio"]["format"])
    if kind == "text":
        control = item.get("cache_control")
        return TextPart(item["text"], CacheControl(control.get("ttl")) if isinstance(control, dict) else None)
    raise ValueError(f"unknown content part type {kind!r}")


def _plain(content: Any) -> str:
    if isinstance(content, list):
        return "".join(item.get("text", "") for item in content if isinstance(item, dict))
    return "" if content is None else str(content)


def _decoded_size(data: str, *, bare_base64: bool = False) -> int:
    """Bytes a base64 payload decodes to (computed, not decoded); a URL counts as its own length."""
    if data.startswith("data:") and ";base64," in data:
        payload = data.split(",", 1)[1]
    elif bare_base64:
        payload = data
    else:
        return len(data.encode("utf-8"))
    return len(payload) * 3 // 4 - payload.count("=", -2)
