"""`--log-format json`: one JSON object per line on stderr, for log shippers.

Log records become objects with `time`, `level`, `logger`, `message` and the event's fields (run, record,
step, attempt, outcome, status, generation_id, ... as run/eventlog.py attaches them); any other line a
command writes to stderr (its summary, an `error:` line) is wrapped as an object too, so every line parses.
The API key is replaced wherever it would appear, and text a provider quotes back from the prompt
(a moderation error's `flagged_input`) is left out.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, TextIO

# The attributes every LogRecord has; anything else on a record was attached as an event field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_FLAGGED_INPUT = re.compile(r'("flagged_input"\s*:\s*)"(?:[^"\\]|\\.)*"')


# A key shorter than this is not redacted: it cannot be told from ordinary text (OPENROUTER_API_KEY=x would turn
# every `extract` into `e[redacted]tract` and mangle generation ids), and it is no real key (OpenRouter's are
# `sk-or-v1-` and 64 hex digits), so nothing secret is lost by leaving it.
MIN_REDACTED_KEY_LENGTH = 8


def redactable(secret: str | None) -> str | None:
    """The key to take out of log text, or None when it is too short to redact without corrupting the text."""
    return secret if secret and len(secret) >= MIN_REDACTED_KEY_LENGTH else None


def scrub(text: str, secret: str | None) -> str:
    """The key replaced, and a prompt quoted back under `flagged_input` left out."""
    secret = redactable(secret)
    if secret and secret in text:
        text = text.replace(secret, "[redacted]")
    return _FLAGGED_INPUT.sub(r'\1"[prompt text not logged]"', text)


def _now(created: float | None = None) -> str:
    moment = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self._secret = secret

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _now(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage(), self._secret),  # before escaping: the patterns see raw quotes
        }
        entry.update(
            (name, value) for name, value in vars(record).items() if name not in _STANDARD and not name.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, ensure_ascii=False, default=str), self._secret)


class JsonLines:
    """Stands in for stderr: every line written that is not already a JSON object becomes one.

    It says it is no terminal, so progress comes as lines (wrapped too), never as a redrawn bar.
    """

    def __init__(self, stream: TextIO, secret: str | None = None) -> None:
        self._stream = stream
        self._secret = secret
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self._stream.write(self._wrap(line) + "\n")
        return len(text)

    def _wrap(self, line: str) -> str:
        if line.startswith("{") and line.endswith("}"):
            return line  # a log record, formatted and scrubbed already
        level = (
            "error" if line.startswith("error:") else "warning" if line.startswith(("stopped:", "warning")) else "info"
        )
        entry = {"time": _now(), "level": level, "logger": "pipeline", "event": "message", "message": scrub(line, None)}
        return scrub(json.dumps(entry, ensure_ascii=False), self._secret)

    def flush(self) -> None:
        if self._partial:
            self._stream.write(self._wrap(self._partial) + "\n")
            self._partial = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... as the real stream has them
        if name == "buffer":  # writing bytes underneath would skip the wrapping
            raise AttributeError(name)
        return getattr(self._stream, name)
