"""Step kinds as the file knows them: how a kind is recognised in YAML, its JSON Schema, and how its
frozen value is built; plus what a kind's builder needs from the file (templates, files beside it).

The chat step is the kind a step is when no other kind claims it (spec/chat.py). Another kind is
registered once, with its runner, through `runner.run.steps.register`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import ForEach, StepBase, Template
from .yamlmarks import SourceMap


@dataclass(frozen=True)
class StepInput:
    """One step as written, with what its builder needs to read it: defaults, the file, the folder."""

    id: str
    raw: Mapping[str, Any]
    defaults: Mapping[str, Any]
    pipeline_name: str
    source: SourceMap
    folder: Path

    @property
    def here(self) -> tuple[str, str]:
        return ("steps", self.id)

    @property
    def line(self) -> int:
        return self.source.where(self.here, key=True)[0] or 1

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(self.raw.get("needs", ()))

    def template(self, field: str, text: str | None = None) -> Template:
        """The Jinja string written at `field` of this step (or `text` standing for it), with its line."""
        return inline_template(
            self.raw[field] if text is None else text, self.source, (*self.here, field), field, self.id
        )

    def when(self) -> Template | None:
        """The `when` guard; a bare expression (`when: steps.a.output.ok`) means the same as `{{ ... }}`."""
        when = self.raw.get("when")
        if when is None or when is True:
            return None
        text = "false" if when is False else when
        return self.template("when", _as_expression(text))

    def for_each(self) -> ForEach | None:
        """`for_each` and the keys that go with it; a bare expression means the same as `{{ ... }}`."""
        if "for_each" not in self.raw:
            for key in ForEach.KEYS:
                if key in self.raw:
                    raise self.source.error(
                        f"step '{self.id}' sets `{key}` but has no `for_each`; `{key}` belongs to a step that maps "
                        'over a list: add `for_each: "{{ ... }}"` or remove it',
                        (*self.here, key),
                        key=True,
                        field=key,
                    )
            return None
        name = self.raw.get("as", "item")
        if not name.isidentifier() or name in RESERVED_NAMES:
            why = "a template name already in use" if name in RESERVED_NAMES else "not a name Jinja can read"
            raise self.source.error(
                f"step '{self.id}': `as: {name}` is {why}; choose another name, such as `item` or `line`",
                (*self.here, "as"),
                field="as",
            )
        return ForEach(
            items=self.template("for_each", _as_expression(self.raw["for_each"])),
            name=name,
            max_items=self.raw.get("max_items", 100),
            on_item_error=self.raw.get("on_item_error", "fail"),
        )

    def base(self) -> dict[str, Any]:
        """The StepBase fields of this step, for a kind's value: `Kind(**step.base(), ...)`."""
        return {
            "id": self.id,
            "needs": self.needs,
            "when": self.when(),
            "line": self.line,
            "for_each": self.for_each(),
        }


# Names templates already have: an element may not hide them.
RESERVED_NAMES = frozenset({"input", "steps", "item_index", "loop", "self", "true", "false", "none"})


def _as_expression(text: str) -> str:
    return text if "{{" in text or "{%" in text else "{{ " + text + " }}"


@dataclass(frozen=True, eq=False)
class StepKind:
    """What the file needs to know of a kind: the keys that mark it, its schema, its builder."""

    name: str
    keys: tuple[str, ...]  # a step that sets one of these is of this kind
    schema: Mapping[str, Any]  # JSON Schema of one step of the kind; may $ref "#/$defs/step_base/properties/..."
    build: Callable[[StepInput], StepBase]  # raises SpecError naming the file and line

    def keys_in(self, raw: Mapping[str, Any]) -> bool:
        """Whether a step as written sets one of this kind's keys."""
        return any(key in raw for key in self.keys)


_KINDS: dict[str, StepKind] = {}  # kinds other than chat, in the order registered


def register_kind(kind: StepKind) -> None:
    if kind.name == "chat" or kind.name in _KINDS:
        raise ValueError(f"step kind '{kind.name}' is already registered")
    _KINDS[kind.name] = kind


def unregister_kind(name: str) -> None:
    _KINDS.pop(name, None)


def kind_of(raw: Mapping[str, Any]) -> StepKind | None:
    """The registered kind whose key the step sets; None for a chat step."""
    for kind in _KINDS.values():
        if any(key in raw for key in kind.keys):
            return kind
    return None


def registered_kinds() -> tuple[StepKind, ...]:
    return tuple(_KINDS.values())


def with_kinds(file_schema: Mapping[str, Any], kinds: tuple[StepKind, ...]) -> dict[str, Any]:
    """The file's schema with each registered kind's step schema chosen by its keys, the built-in kinds otherwise.

    A kind's schema that lists `properties` takes every StepBase key it leaves out (`when`, `for_each`,
    ...) by reference to `step_base`, so any kind can be guarded and mapped.
    """
    schema = copy.deepcopy(dict(file_schema))
    chosen: dict[str, Any] = schema["properties"]["steps"]["additionalProperties"]  # the built-in kinds' choice
    shared = schema["$defs"]["step_base"]["properties"]
    for kind in reversed(kinds):
        marked = {"anyOf": [{"required": [key]} for key in kind.keys]}
        own = copy.deepcopy(dict(kind.schema))
        if isinstance(own.get("properties"), Mapping):
            own["properties"] = {
                **{name: {"$ref": f"#/$defs/step_base/properties/{name}"} for name in shared},
                **own["properties"],
            }
        chosen = {"if": marked, "then": own, "else": chosen}
    schema["properties"]["steps"]["additionalProperties"] = chosen
    return schema


def inline_template(text: str, source: SourceMap, location: tuple, field: str, step_id: str | None) -> Template:
    """A template written in the pipeline file at `location`, with the file lines it spans."""
    line = template_line(source, location)
    span = max(1, len(text.splitlines()))
    return Template(text, source.path, line, field, step_id, None, source.lines[line - 1 : line - 1 + span])


def template_line(source: SourceMap, location: tuple) -> int:
    """Line of a template's first text line (the source map already skips a block scalar's `|`)."""
    return source.where(location)[0] or 1


def inside(folder: Path, relative: str, source: SourceMap, location: tuple, field: str) -> Path:
    """Resolve a path written in the pipeline file; refuse one that leaves the pipeline's folder."""
    candidate = (folder / relative).resolve()
    if not candidate.is_relative_to(folder):
        raise source.error(
            f"{field} '{relative}' points outside the pipeline's folder ({folder}); "
            "keep prompt and schema files beside the pipeline file or below it",
            location,
            field=field,
        )
    if not candidate.is_file():
        raise source.error(f"{field} '{relative}' does not exist (looked for {candidate})", location, field=field)
    return candidate
