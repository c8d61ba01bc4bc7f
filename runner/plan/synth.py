"""Values that satisfy a JSON Schema, chosen deterministically from a seed: the fake's replies and
the dry run's stand-ins.

Every value is checked against its schema before it is handed out (references resolved with
`referencing`, formats with jsonschema's format checker, as the reply validator does). When no
attempt validates, SynthesisError says where and why instead of returning an invalid value.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import random
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from ..errors import SynthesisError
from .regexgen import example
from .schemaops import first_bound, kind_of, merge, rank, tidy

if TYPE_CHECKING:
    from referencing._core import Resolver

ATTEMPTS = 8  # whole-value attempts, each from a different seed, before giving up
_DEEP = 3  # $ref expansions on one path after which only the smallest values are made
_TOO_DEEP = 40  # a reference cycle that admits no finite value
_ROOT_URI = "urn:pipeline:synth"
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_NUMERIC = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def synthesize(schema: Any, seed: bytes, prompt_text: str = "") -> Any:
    """A value valid against `schema`, chosen deterministically from `seed` (the prompt's hash)."""
    return Synthesizer(schema).value(seed, prompt_text)


class Synthesizer:
    """One schema, compiled once: its references and its validator."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema if isinstance(schema, dict | bool) else {}
        resource = DRAFT202012.create_resource(self.schema)
        registry = Registry().with_resource(_ROOT_URI, resource)
        self._resolver = registry.resolver(base_uri=_ROOT_URI)
        self._numeric: dict[str, Draft202012Validator] = {}  # one per numeric subschema
        self.validator = Draft202012Validator(
            self.schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )

    def value(self, seed: bytes, prompt_text: str = "") -> Any:
        """The value for `seed`, or SynthesisError naming the JSON pointer no attempt could satisfy."""
        seed = seed if len(seed) >= 8 else hashlib.sha256(seed).digest()
        words = _WORD.findall(prompt_text)[-60:] or ["sample", "text"]
        closest, problem, pointer = None, "", "/"
        for attempt in range(ATTEMPTS):
            run = _Run(self, words, attempt)
            root = _At("", _reseed(seed, f"attempt {attempt}") if attempt else seed)
            try:
                candidate = run.make(self.schema, self._resolver, root, 0)
            except _NoValue as exc:
                problem, pointer = exc.problem, exc.pointer or "/"
                continue
            error = next(iter(self.validator.iter_errors(candidate)), None)
            if error is None:
                return candidate
            closest, problem = candidate, error.message
            pointer = "/" + "/".join(str(part) for part in error.absolute_path)
        raise SynthesisError(pointer, problem, closest)

    def numeric_validator(self, numeric: dict[str, Any]) -> Draft202012Validator:
        key = json.dumps(numeric, sort_keys=True)
        if key not in self._numeric:
            self._numeric[key] = Draft202012Validator(numeric)
        return self._numeric[key]

    def fits(self, schema: Any, value: Any) -> bool:
        """Whether `value` satisfies a subschema of this schema (references resolve from the root)."""
        return self.validator.evolve(schema=schema).is_valid(value)


class _NoValue(Exception):
    def __init__(self, pointer: str, problem: str) -> None:
        super().__init__(problem)
        self.pointer, self.problem = pointer, problem


@dataclass(frozen=True)
class _At:
    """A place in the value being made: its JSON pointer and its own seed (derived from the parent's)."""

    pointer: str
    seed: bytes

    def child(self, key: str) -> _At:
        return _At(f"{self.pointer}/{key}", _reseed(self.seed, key))

    def rng(self, salt: str = "") -> random.Random:
        return random.Random(_reseed(self.seed, salt))


class _Run:
    """One attempt: seeded choices walking the schema."""

    def __init__(self, synthesizer: Synthesizer, words: list[str], attempt: int) -> None:
        self.synthesizer = synthesizer
        self.words = words
        self.attempt = attempt

    def make(self, schema: Any, resolver: Resolver, at: _At, depth: int) -> Any:
        if schema is True:
            schema = {}
        if schema is False or depth > _TOO_DEEP:
            raise _NoValue(at.pointer, "no value is allowed here" if schema is False else "the references never end")
        schema, resolver, depth = self._deref(schema, resolver, at, depth)
        deep = depth >= _DEEP
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = list(schema["enum"])
            if not options:
                raise _NoValue(at.pointer, "the enum is empty")
            return options[at.seed[0] % len(options)]
        if schema.get("allOf"):
            merged = {key: value for key, value in schema.items() if key != "allOf"}
            for part in schema["allOf"]:
                part, resolver, depth = self._deref(part if isinstance(part, dict) else {}, resolver, at, depth)
                merged = merge(merged, part)
            return self.make(merged, resolver, at, depth)
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self._one_of(schema, key, resolver, at, depth, deep)
        if isinstance(schema.get("if"), dict):
            return self._if_then_else(schema, resolver, at, depth)
        kind = kind_of(schema, deep)
        if kind == "object":
            return self._object(schema, resolver, at, depth, deep)
        if kind == "array":
            return self._array(schema, resolver, at, depth, deep)
        if kind in ("integer", "number"):
            return self._number(schema, at, integer=kind == "integer")
        if kind == "boolean":
            return bool(at.seed[1] % 2)
        if kind == "null":
            return None
        return self._string(schema, at)

    def _deref(self, schema: dict, resolver: Resolver, at: _At, depth: int) -> tuple[dict, Resolver, int]:
        if "$id" in schema:
            resolver = resolver.in_subresource(DRAFT202012.create_resource(schema))
        while isinstance(schema.get("$ref") or schema.get("$dynamicRef"), str):
            reference = schema.get("$ref") or schema["$dynamicRef"]
            try:
                resolved = resolver.lookup(reference)
            except Unresolvable as exc:
                raise _NoValue(at.pointer, f"cannot resolve {reference!r} ({exc})") from None
            target = resolved.contents if isinstance(resolved.contents, dict) else {}
            siblings = {key: value for key, value in schema.items() if key not in ("$ref", "$dynamicRef", "$id")}
            schema, resolver, depth = merge(target, siblings), resolved.resolver, depth + 1
            if depth > _TOO_DEEP:
                raise _NoValue(at.pointer, "the references never end")
        return schema, resolver, depth

    def _one_of(self, schema: dict, key: str, resolver: Resolver, at: _At, depth: int, deep: bool) -> Any:
        rest = {name: value for name, value in schema.items() if name != key}
        options = [option for option in schema[key] if option is not False]
        rng = at.rng(key)
        ranked = sorted(options, key=lambda option: (rank(option, deep), rng.random() if self.attempt else 0))
        value, problem = None, f"no option of {key} fits"
        for option in ranked:
            try:
                value = self.make(merge(rest, option), resolver, at, depth)
            except _NoValue as exc:
                problem = exc.problem
                continue
            if self.synthesizer.fits(schema, value):
                return value
        if value is None:
            raise _NoValue(at.pointer, problem)
        return value

    def _if_then_else(self, schema: dict, resolver: Resolver, at: _At, depth: int) -> Any:
        rest = {key: value for key, value in schema.items() if key not in ("if", "then", "else")}
        branches = [merge(schema["if"], schema.get("then", {})), schema.get("else", {})]
        if at.seed[4] % 2:
            branches.reverse()
        value = None
        for branch in branches:
            value = self.make(merge(rest, branch), resolver, at, depth)
            if self.synthesizer.fits(schema, value):
                break
        return value

    def _object(self, schema: dict, resolver: Resolver, at: _At, depth: int, deep: bool) -> dict:
        properties = schema.get("properties") or {}
        required = list(schema.get("required") or ())
        names = [name for name in properties if name in required or not deep]
        names += [name for name in required if name not in names]
        limit = schema.get("maxProperties")
        if limit is not None and len(names) > limit:
            names = [name for name in names if name in required] + [name for name in names if name not in required]
            names = names[: max(limit, len(required))]
        for name, wanted in (schema.get("dependentRequired") or {}).items():
            if name in names:
                names += [extra for extra in wanted if extra not in names]
        result: dict[str, Any] = {}
        for name in names:
            result[name] = self.make(self._property_schema(schema, name), resolver, at.child(name), depth)
        index = 0
        while len(result) < schema.get("minProperties", 0) and index < 1000:
            index += 1
            name = self._extra_key(schema, at, index)
            if name is None:
                break
            if name not in result:
                result[name] = self.make(self._property_schema(schema, name), resolver, at.child(name), depth)
        return result

    def _property_schema(self, schema: dict, name: str) -> Any:
        if name in (schema.get("properties") or {}):
            return schema["properties"][name]
        for pattern, sub in (schema.get("patternProperties") or {}).items():
            if re.search(pattern, name):
                return sub
        extra = schema.get("additionalProperties", schema.get("unevaluatedProperties", {}))
        return {} if extra is True else extra

    def _extra_key(self, schema: dict, at: _At, index: int) -> str | None:
        for pattern in schema.get("patternProperties") or {}:
            key = example(pattern, at.rng(f"key {index}"))
            if key is not None and re.search(pattern, key):
                return key
        if schema.get("additionalProperties", True) is False:
            return None
        return f"extra_{index}"

    def _array(self, schema: dict, resolver: Resolver, at: _At, depth: int, deep: bool) -> list:
        prefix = list(schema.get("prefixItems") or ())
        items = schema.get("items", {})
        minimum = schema.get("minItems", 0)
        count = max(minimum, 0 if deep else max(1, min(len(prefix), 3)))
        if items is False:
            count = min(count, len(prefix))
        contains = schema.get("contains")
        needed = schema.get("minContains", 1) if isinstance(contains, dict) else 0
        count = min(max(count, len(prefix) + needed if items is not False else count), schema.get("maxItems", 10**6))
        unique = schema.get("uniqueItems") is True
        result: list[Any] = []
        seen: set[str] = set()
        tries = 0
        while len(result) < count and tries < count * 25 + 25:
            position = len(result)
            sub = prefix[position] if position < len(prefix) else items
            if 0 <= position - len(prefix) < needed:
                sub = merge(sub, contains)
            place = _At(f"{at.pointer}/{position}", _reseed(at.seed, str(tries)))
            tries += 1
            item = self.make(sub, resolver, place, depth)
            key = _identity(item)
            if unique and key in seen:
                continue
            seen.add(key)
            result.append(item)
        if len(result) < minimum:
            raise _NoValue(at.pointer, f"could not make {minimum} distinct items")
        return result

    def _number(self, schema: dict, at: _At, *, integer: bool) -> int | float:
        numeric = {key: schema[key] for key in _NUMERIC if key in schema}
        numeric["type"] = "integer" if integer else "number"
        check = self.synthesizer.numeric_validator(numeric)
        low = first_bound(schema, "minimum", "exclusiveMinimum")
        high = first_bound(schema, "maximum", "exclusiveMaximum")
        if low is None:
            low = 0 if high is None or high >= 0 else high - 100
        if high is None:
            high = low + 100
        fraction = at.seed[2] / 255
        step = schema.get("multipleOf")
        candidates: list[float] = []
        if step:
            first, last = math.ceil(low / step), math.floor(high / step)
            if first <= last:
                start = first + round((last - first) * fraction)
                candidates += [tidy(k * step, step) for k in range(start, min(last, start + 50) + 1)]
                candidates += [tidy(k * step, step) for k in range(first, min(last, first + 50) + 1)]
                candidates += list(range(math.ceil(low), math.floor(high) + 1))[:50]
        else:
            value = low + (high - low) * fraction
            candidates += [round(value), math.ceil(low), math.floor(high)] if integer else [round(value, 2)]
            candidates += [(low + high) / 2, low + (high - low) / 4]
        for candidate in candidates:
            value = int(candidate) if integer and float(candidate).is_integer() else candidate
            if check.is_valid(value):
                return value
        raise _NoValue(at.pointer, f"no {numeric['type']} satisfies {json.dumps(numeric)}")

    def _string(self, schema: dict, at: _At) -> str:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            for attempt in range(12):
                text = example(pattern, at.rng(f"pattern {attempt}"), extra_repeats=3 + attempt)
                if text is None:
                    continue
                padding = "x" * max(0, low - len(text))  # an unanchored pattern may sit inside longer text
                for candidate in (text, text + padding, padding + text):
                    if re.search(pattern, candidate) and low <= len(candidate) <= (high or len(candidate)):
                        return candidate
            raise _NoValue(at.pointer, f"no string matching pattern {pattern!r} could be made")
        made = _formatted(schema.get("format"), at)
        if made is not None:
            return made
        text = " ".join(self.words[byte % len(self.words)] for byte in at.seed[3:8]).capitalize()
        if len(text) < low:
            text += "." * (low - len(text))
        return text if high is None else text[:high]


def _formatted(name: Any, at: _At) -> str | None:
    """A value of a format jsonschema knows (or that the JSON Schema spec names), varied by the seed."""
    if not isinstance(name, str):
        return None
    rng = at.rng("format")
    number = rng.randrange(1, 10_000)
    day = datetime.date(2026, 1, 1) + datetime.timedelta(days=number % 365)
    leaf = re.sub(r"[^a-z0-9]+", "-", at.pointer.rsplit("/", 1)[-1].lower()).strip("-") or "item"
    values = {
        "date": day.isoformat(),
        "date-time": f"{day.isoformat()}T{number % 24:02d}:{number % 60:02d}:00Z",
        "time": f"{number % 24:02d}:{number % 60:02d}:00Z",
        "duration": f"P{number % 30 + 1}D",
        "email": f"{leaf}{number}@example.com",
        "idn-email": f"{leaf}{number}@example.com",
        "hostname": f"{leaf}{number}.example.com",
        "idn-hostname": f"{leaf}{number}.example.com",
        "ipv4": f"192.0.2.{number % 254 + 1}",
        "ipv6": f"2001:db8::{number:x}",
        "uri": f"https://example.com/{leaf}/{number}",
        "iri": f"https://example.com/{leaf}/{number}",
        "uri-reference": f"/{leaf}/{number}",
        "iri-reference": f"/{leaf}/{number}",
        "uri-template": f"https://example.com/{leaf}/{{id}}",
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "json-pointer": f"/{leaf}/{number}",
        "relative-json-pointer": f"0/{leaf}",
        "regex": f"^{leaf}[0-9]+$",
    }
    return values.get(name)


def _identity(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _reseed(seed: bytes, salt: str) -> bytes:
    return hashlib.sha256(seed + salt.encode("utf-8")).digest()
