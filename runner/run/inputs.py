"""Input records read lazily from JSONL, CSV, stdin or a pipe, each with a stable key.

The source is checked when it is opened (before a run is created); after that, a record that
cannot be used (bad JSON or bytes, a short CSV row, a duplicate key) becomes an InputItem with a
`problem`, and the other records go on. Line numbers are physical lines; a CSV header is line 1.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..spec.strict import json_type

log = logging.getLogger(__name__)

CSV_CELL_LIMIT = 128 * 1024  # characters; csv's own default limit, now checked per row by the reader
_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_BOM = "\ufeff"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


@dataclass(frozen=True)
class InputItem:
    """One record to run, or the reason it cannot run (`problem`): the others still go on."""

    key: str | int
    record: dict[str, Any] | None
    problem: str | None = None


def is_stream(source: str) -> bool:
    """stdin, a pipe or a /dev/fd path (`--inputs <(cmd)`): read once, in order, maybe slowly."""
    if source == "-":
        return True
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def read_inputs(
    source: str, *, key_field: str | None = None, input_schema: Mapping[str, Any] | None = None
) -> Iterator[InputItem]:
    """Open `source` now (refusing a missing file, a folder or an unknown kind), read records lazily.

    `-` is stdin and a pipe is read as JSON Lines unless its name ends in .csv.
    """
    keys = _Keys(key_field)
    if source == "-":
        return _jsonl(getattr(sys.stdin, "buffer", sys.stdin), keys)
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise UsageError(f"--inputs {source}: this is a folder; give a .jsonl or .csv file")
    if suffix not in (*_CSV_SUFFIXES, *_JSONL_SUFFIXES) and not is_stream(source):
        if not path.exists():
            raise UsageError(f"--inputs {source}: no such file")
        raise UsageError(f"--inputs {source}: use a .jsonl (one JSON object a line) or .csv file, or - for stdin")
    try:
        handle = path.open("rb")
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        raise UsageError(f"--inputs {source}: {reason}") from None
    if suffix in _CSV_SUFFIXES:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
        try:
            reader, header = _csv_header(text, source)
        except BaseException:
            text.close()
            raise
        return _closing(text, _csv_rows(reader, header, keys, input_schema or {}))
    return _closing(handle, _jsonl(handle, keys))


def _closing(handle: io.IOBase, items: Iterator[InputItem]) -> Iterator[InputItem]:
    with handle:
        yield from items


class _Keys:
    """Keys must be unique in a run: the database keeps one result per key.

    Without --key-field the key is the line number (unique by construction). With it, a record
    that has no usable key, repeats an earlier key or cannot be read at all is keyed `line N`.
    """

    def __init__(self, key_field: str | None) -> None:
        self.key_field = key_field
        self.first_line: dict[str, int] = {}

    def problem(self, line: int, message: str) -> InputItem:
        if self.key_field is None:
            return InputItem(line, None, message)
        key, suffix = f"line {line}", 1
        while self.first_line.setdefault(key, line) != line:  # a real key spelled "line N" came first
            key, suffix = f"line {line} ({suffix})", suffix + 1
        return InputItem(key, None, message)

    def item(self, record: dict[str, Any], line: int) -> InputItem:
        if self.key_field is None:
            return InputItem(line, record)
        key = record.get(self.key_field)
        if key is None or isinstance(key, dict | list) or key == "":
            return self.problem(line, f"line {line} has no usable --key-field '{self.key_field}'")
        first = self.first_line.setdefault(str(key), line)
        if first != line:
            message = f"line {line}: duplicate key {key!r} (first on line {first}); this record was not run"
            log.warning("--key-field %s: %s", self.key_field, message)  # a data error to fix, not a model failure
            return self.problem(line, message)
        return InputItem(key, record)


class NotANumber(ValueError):
    """NaN or Infinity in JSON text: Python's json accepts them, JSON does not."""


def _no_constants(name: str) -> Any:
    raise NotANumber(name)


def parse_json(text: str) -> Any:
    """Strict JSON: NaN and Infinity are refused (NotANumber, a ValueError)."""
    return json.loads(text, parse_constant=_no_constants)


def _jsonl(lines: Iterable[bytes | str], keys: _Keys) -> Iterator[InputItem]:
    for line_number, raw in enumerate(lines, start=1):
        text, problem = _decode(raw, line_number)
        if problem is not None:
            yield keys.problem(line_number, problem)
            continue
        if line_number == 1:
            text = text.removeprefix(_BOM)
        if not text.strip():
            continue
        record, problem = _parse_line(text, line_number)
        if problem is not None:
            yield keys.problem(line_number, problem)
            continue
        yield keys.item(record, line_number)


def _decode(raw: bytes | str, line_number: int) -> tuple[str, str | None]:
    if isinstance(raw, str):  # a text stream (stdin replaced by a StringIO, or decoded with surrogateescape)
        bad = _SURROGATE.search(raw)
        if bad is None:
            return raw, None
        return raw, _not_utf8(line_number, bad.start() + 1, ord(bad.group()) & 0xFF)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return "", _not_utf8(line_number, exc.start + 1, raw[exc.start])


def _not_utf8(line_number: int, column: int, byte: int) -> str:
    return f"line {line_number} is not valid UTF-8 text (byte 0x{byte:02x} at byte {column}); save the file as UTF-8"


def _parse_line(text: str, line_number: int) -> tuple[Any, str | None]:
    try:
        record = parse_json(text)
    except NotANumber as exc:
        return None, f"line {line_number}: {exc} is not a JSON number (JSON has no NaN or Infinity; use null)"
    except json.JSONDecodeError as exc:
        return None, f"line {line_number} is not valid JSON: {exc.msg} at column {exc.colno}"
    except (ValueError, RecursionError) as exc:
        return None, f"line {line_number} is not usable JSON: {exc}"
    if not isinstance(record, dict):
        return None, f"line {line_number} is a JSON {json_type(record)}, not an object"
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(record):
        return None, (
            f"line {line_number} has a lone surrogate escape (such as \\ud800) in a string: that is not Unicode text"
        )
    return record, None


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def _csv_header(handle: io.TextIOWrapper, source: str) -> tuple[Any, tuple[str, ...]]:
    """The header row, read now so that a file without a usable one is refused before the run."""
    # The reader's own limit would raise mid-file and lose its place in a quoted cell; rows are checked below.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(handle)
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise UsageError(f"--inputs {source}: line 1 (the header) is not valid CSV: {exc}") from None
    names = tuple(name.strip() for name in header)
    if any(_SURROGATE.search(name) for name in names):
        raise UsageError(f"--inputs {source}: line 1 (the header) is not valid UTF-8 text; save the file as UTF-8")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(f"--inputs {source}: line 1 (the header) names the column '{name}' twice")
        seen.add(name)
    return reader, names


def _csv_rows(reader: Any, header: tuple[str, ...], keys: _Keys, schema: Mapping[str, Any]) -> Iterator[InputItem]:
    types = {name: _wanted((spec or {}).get("type")) for name, spec in (schema.get("properties") or {}).items()}
    while True:
        line = reader.line_num + 1  # the row's first physical line
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield keys.problem(line, f"line {line} is not valid CSV: {exc}")
            continue
        if not row:
            continue
        problem = _row_problem(row, header, line)
        if problem is not None:
            yield keys.problem(line, problem)
            continue
        record, problem = _coerce(dict(zip(header, row, strict=True)), types, line)
        yield keys.problem(line, problem) if problem is not None else keys.item(record, line)


def _row_problem(row: list[str], header: tuple[str, ...], line: int) -> str | None:
    if len(row) != len(header):
        return f"line {line} has {len(row)} cell(s), the header has {len(header)}"
    for column, cell in zip(header, row, strict=True):
        if len(cell) > CSV_CELL_LIMIT:
            return f"line {line}: the cell of column '{column}' is longer than {CSV_CELL_LIMIT} characters (128 KiB)"
        bad = _SURROGATE.search(cell)
        if bad is not None:
            return f"line {line} is not valid UTF-8 text (byte 0x{ord(bad.group()) & 0xFF:02x} in column '{column}')"
    return None


def _wanted(declared: Any) -> frozenset[str]:
    return frozenset(declared) if isinstance(declared, list) else frozenset({declared})


def _coerce(row: dict[str, str], types: Mapping[str, frozenset[str]], line: int) -> tuple[dict[str, Any], str | None]:
    """CSV cells are text: trimmed, then turned into the numbers and booleans the input schema asks for."""
    record: dict[str, Any] = {}
    for name, cell in row.items():
        text = cell.strip()
        wanted = types.get(name, frozenset())
        if text == "" and wanted & {"integer", "number", "boolean", "null"}:
            continue  # an empty cell for a typed field is a missing value
        if wanted & {"integer", "number"} and text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            return record, f"line {line}: column '{name}' is {text!r}, not a number (NaN and Infinity are refused)"
        record[name] = _convert(text, wanted)
    return record, None


def _convert(text: str, wanted: frozenset[str]) -> Any:
    if wanted & {"integer", "number"} and _NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            if "integer" in wanted and value.is_integer():
                return int(text) if text.lstrip("+-").isdigit() else int(value)
            if "number" in wanted:
                return int(text) if text.lstrip("+-").isdigit() else value
    if "boolean" in wanted and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    return text


def record_fingerprint(record: Mapping[str, Any]) -> str:
    """A hash of the record's canonical JSON: --resume serves a stored answer only to the same content."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


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
