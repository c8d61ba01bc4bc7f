"""Attachments as a record names them, typed and checked without touching a file: an http(s) URL, a
data: URL or a path (read later, below the files root, by run/files.py), and the message part each
becomes. Everything here is pure: bytes come in, parts go out, and every refusal is an AttachmentError.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ..chat.messages import AudioPart, ContentPart, FilePart, ImagePart, Message
from ..errors import AttachmentError

# What OpenRouter takes, by MIME type: the attachment's type and, for audio, its `format`.
MIME_TYPES: dict[str, tuple[str, str]] = {
    "image/png": ("image", "png"),
    "image/jpeg": ("image", "jpeg"),
    "image/webp": ("image", "webp"),
    "image/gif": ("image", "gif"),
    "application/pdf": ("pdf", "pdf"),
    "audio/wav": ("audio", "wav"),
    "audio/mpeg": ("audio", "mp3"),
}
_ALIASES = {"image/jpg": "image/jpeg", "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg"}
EXTENSIONS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".pdf": "application/pdf",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
}
KNOWN = "png, jpeg, webp or gif images, PDFs, wav or mp3 audio"
# OpenRouter's file-parser engines that are paid per page ($2 per 1,000 pages for mistral-ocr); cloudflare-ai
# is free and native is billed as the model's input tokens.
PAGE_PRICE_USD = {"mistral-ocr": 0.002}
URL_DOCUMENT_PAGES = 25  # a PDF behind a URL is not fetched here: counted as a long one
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_SHOWN = 80  # characters of a record's value quoted in a message


@dataclass(frozen=True)
class Attachment:
    """One attachment of one record: where it is (`url`, `data` or `file`), what it is, and which entry named it."""

    source: str
    where: str  # "url" | "data" | "file"
    type: str  # "image" | "pdf" | "audio"
    mime: str | None  # known for data: URLs and by a name's extension; a file's bytes have the last word
    label: str  # `attachments[0]` of step 'inspect'


def parse_attachments(rendered: Iterable[tuple[Any, str | None, str]]) -> tuple[Attachment, ...]:
    """Each rendered entry (value, declared type, label): a string, a list of them, or null (none)."""
    found: list[Attachment] = []
    for value, declared, label in rendered:
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            if not isinstance(item, str):
                raise AttachmentError(f"{label}: an attachment is a URL or a path, not {type(item).__name__} {item!r}")
            found.append(parse_attachment(item, declared, label))
    return tuple(found)


def parse_attachment(value: str, declared: str | None, label: str) -> Attachment:
    text = value.strip()
    if not text:
        raise AttachmentError(f"{label}: the attachment is empty")
    if "\x00" in text:
        raise AttachmentError(f"{label}: {_shown(text)} holds a NUL character")
    scheme = _SCHEME.match(text)
    if text[:5].lower() == "data:":
        mime = _data_mime(text, label)
        return Attachment(text, "data", _type_of(mime, declared, text, label), mime, label)
    if scheme is not None:
        if scheme.group(1).lower() not in ("http", "https"):
            raise AttachmentError(
                f"{label}: {_shown(text)} is a {scheme.group(1)}: URL; attachments are http(s) URLs, data: URLs "
                "or paths below the files root"
            )
        mime = _by_extension(urlsplit(text).path)
        return Attachment(text, "url", _type_of(mime, declared, text, label), mime, label)
    mime = _by_extension(text)
    return Attachment(text, "file", _type_of(mime, declared, text, label), mime, label)


def to_part(attachment: Attachment, data: bytes | None, max_bytes: int) -> ContentPart:
    """The message part: a URL as it is, a data: URL checked, a file's bytes (`data`) as a base64 data: URL."""
    if attachment.where == "url":
        if attachment.type == "audio":
            raise AttachmentError(
                f"{attachment.label}: {_shown(attachment.source)}: OpenRouter does not fetch audio URLs; "
                "give a file below the files root or a data: URL"
            )
        if attachment.type == "image":
            return ImagePart(attachment.source)
        return FilePart(_filename(urlsplit(attachment.source).path, "document.pdf"), attachment.source)
    if attachment.where == "data":
        payload = "".join(attachment.source.split(",", 1)[1].split())
        data = _decode(payload, attachment)
        name = "document.pdf"
    else:
        if data is None:
            raise AttachmentError(f"{attachment.label}: {_shown(attachment.source)} was not read")
        payload = None
        name = _filename(attachment.source, "document.pdf")
    if len(data) > max_bytes:
        raise AttachmentError(
            f"{attachment.label}: {_shown(attachment.source)} is {len(data) / 1e6:.1f} MB, over the "
            f"{max_bytes / 1e6:g} MB limit for one attachment"
        )
    mime = _checked_bytes(data, attachment)
    payload = payload if payload is not None else base64.b64encode(data).decode("ascii")
    if attachment.type == "audio":
        return AudioPart(payload, MIME_TYPES[mime][1])
    url = f"data:{mime};base64,{payload}"
    return ImagePart(url) if attachment.type == "image" else FilePart(name, url)


def with_attachments(messages: tuple[Message, ...], parts: tuple[ContentPart, ...]) -> tuple[Message, ...]:
    """The prompt (the last user message) with the attachments after its text."""
    if not parts:
        return messages
    *before, prompt = messages
    return (*before, replace(prompt, parts=(*prompt.parts, *parts)))


def sniff(data: bytes) -> str | None:
    """The MIME type the bytes themselves show, for the formats OpenRouter takes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def pdf_pages(data: bytes) -> int:
    """The pages of a PDF, counted by its page objects (at least one)."""
    return max(1, len(_PAGE.findall(data)))


def _type_of(mime: str | None, declared: str | None, text: str, label: str) -> str:
    if mime is not None:
        found = MIME_TYPES[mime][0]
        if declared is not None and declared != found:
            raise AttachmentError(f"{label}: {_shown(text)} is {_article(found)}, not {_article(declared)}")
        return found
    if declared is not None:
        return declared
    raise AttachmentError(
        f"{label}: cannot tell the type of {_shown(text)} from its name; OpenRouter takes {KNOWN}: "
        "write `{file: ..., type: image|pdf|audio}`"
    )


def _data_mime(text: str, label: str) -> str:
    header, comma, _ = text.partition(",")
    pieces = header[5:].split(";")
    mime = _ALIASES.get(pieces[0].strip().lower(), pieces[0].strip().lower())
    if not comma or "base64" not in (piece.strip().lower() for piece in pieces[1:]):
        raise AttachmentError(f"{label}: {_shown(text)} is not a base64 data: URL (data:<type>;base64,<data>)")
    if mime not in MIME_TYPES:
        raise AttachmentError(f"{label}: a data: URL of type {mime or '(none)'!r}; OpenRouter takes {KNOWN}")
    return mime


def _decode(payload: str, attachment: Attachment) -> bytes:
    if len(payload) % 4 or not _BASE64.match(payload):
        raise AttachmentError(f"{attachment.label}: the data: URL's data is not valid base64")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise AttachmentError(f"{attachment.label}: the data: URL's data is not valid base64") from None


def _checked_bytes(data: bytes, attachment: Attachment) -> str:
    """The bytes' own MIME type, which must be of the attachment's type (and a data: URL's stated type)."""
    found = sniff(data)
    if found is None or MIME_TYPES[found][0] != attachment.type:
        raise AttachmentError(
            f"{attachment.label}: {_shown(attachment.source)} does not hold {_article(attachment.type)} "
            f"OpenRouter takes ({KNOWN})"
        )
    if attachment.where == "data" and found != attachment.mime:
        raise AttachmentError(f"{attachment.label}: the data: URL says {attachment.mime} but holds {found}")
    return found


def _by_extension(path: str) -> str | None:
    return EXTENSIONS.get(posixpath.splitext(path)[1].lower())


def _filename(path: str, default: str) -> str:
    return posixpath.basename(path.replace("\\", "/")) or default


def _article(kind: str) -> str:
    return {"image": "an image", "pdf": "a PDF", "audio": "audio"}.get(kind, kind)


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")
