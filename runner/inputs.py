"""Input records read lazily from JSONL, CSV or stdin, each with a stable key."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import UsageError
from .schemas import json_type


@dataclass(frozen=True)
class InputItem:
    """One record to run, or the reason it cannot run (`problem`): the others still go on."""

    key: str | int
    record: dict[str, Any] | None
    problem: str | None = None


def read_inputs(
    source: str, *, key_field: str | None = None, input_schema: Mapping[str, Any] | None = None
) -> Iterator[InputItem]:
    """Records from `source` (`-` is stdin, as JSON Lines), one at a time; the key is the line number."""
    if source == "-":
        yield from _jsonl(sys.stdin, key_field)
        return
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise UsageError(f"--inputs {source}: use a .jsonl (one JSON object a line) or .csv file, or - for stdin")
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"--inputs {source}: {exc.strerror or exc}") from None
    with handle:
        if suffix == ".csv":
            yield from _csv(handle, key_field, input_schema or {})
        else:
            yield from _jsonl(handle, key_field)


def _jsonl(handle: TextIO, key_field: str | None) -> Iterator[InputItem]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield InputItem(line_number, None, f"line {line_number} is not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(record, dict):
            yield InputItem(line_number, None, f"line {line_number} is a JSON {json_type(record)}, not an object")
            continue
        yield _keyed(record, line_number, key_field)


def _csv(handle: TextIO, key_field: str | None, input_schema: Mapping[str, Any]) -> Iterator[InputItem]:
    reader = csv.DictReader(handle)
    types = {name: (spec or {}).get("type") for name, spec in (input_schema.get("properties") or {}).items()}
    for row in reader:
        if None in row:
            yield InputItem(reader.line_num, None, f"line {reader.line_num} has more cells than the header")
            continue
        yield _keyed(_coerce(row, types), reader.line_num, key_field)


def _coerce(row: dict[str, str], types: Mapping[str, Any]) -> dict[str, Any]:
    """CSV cells are text; turn them into the numbers and booleans the input schema asks for."""
    record: dict[str, Any] = {}
    for name, text in row.items():
        wanted = types.get(name)
        wanted = set(wanted) if isinstance(wanted, list) else {wanted}
        if text == "" and wanted & {"integer", "number", "boolean", "null"}:
            continue  # an empty cell for a typed field is a missing value
        record[name] = _convert(text, wanted)
    return record


def _convert(text: str, wanted: set) -> Any:
    try:
        if "integer" in wanted and text.lstrip("-").isdigit():
            return int(text)
        if "number" in wanted:
            return float(text) if not text.lstrip("-").isdigit() else int(text)
    except ValueError:
        return text
    if "boolean" in wanted and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _keyed(record: dict[str, Any], line_number: int, key_field: str | None) -> InputItem:
    if key_field is None:
        return InputItem(line_number, record)
    key = record.get(key_field)
    if key is None or isinstance(key, dict | list) or key == "":
        return InputItem(line_number, None, f"line {line_number} has no usable --key-field '{key_field}'")
    return InputItem(key, record)


async def aiter_items(items: Iterable[InputItem], *, threaded: bool) -> AsyncIterator[InputItem]:
    """Items for the event loop; `threaded` reads in a worker thread (stdin may block)."""
    iterator = iter(items)
    if not threaded:
        for item in iterator:
            yield item
        return
    done = object()
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item
