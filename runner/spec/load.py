"""Loading the pipeline file: YAML -> checked against runner/data/pipeline.schema.json -> the frozen
values of model.py, each step built by its kind (kinds.py; the built-in kinds: code.py for `call`, chat.py for
`prompt`)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from ..errors import SpecError, SpecErrors
from .chat import CHAT
from .code import CODE
from .explain import explain
from .kinds import StepInput, StepKind, kind_of, registered_kinds, with_kinds
from .model import PipelineSpec, freeze
from .strict import metaschema_problems
from .yamlmarks import SourceMap, load_yaml

BUILTIN_KINDS = (CHAT, CODE)  # known to the file's own schema; other kinds are registered with their runners

# Read through importlib.resources: the schema ships inside the package, so an installed wheel finds it too.
SCHEMA_PATH = files("runner") / "data" / "pipeline.schema.json"


@cache
def file_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def pipeline_schema_validator() -> Draft202012Validator:
    """The file's schema, with the step schema of every registered kind besides chat."""
    return _validator(registered_kinds())


@cache
def _validator(kinds: tuple[StepKind, ...]) -> Draft202012Validator:
    schema = with_kinds(file_schema(), kinds) if kinds else file_schema()
    return Draft202012Validator(schema)  # self-contained: OpenRouter's settings schema is in its $defs


def load_spec(path: str | Path, *, text: str | None = None) -> PipelineSpec:
    """Read, check and freeze one pipeline file (or `text` given for it). Raises SpecError naming file and line."""
    file_path = Path(path)
    display = str(path)
    if text is None:
        try:
            text = file_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError("file not found", path=display) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read the file: {exc}", path=display) from None
    data, source = load_yaml(text, display)
    if not isinstance(data, dict):
        raise SpecError("the top level must be a mapping with `name` and `steps`", path=display, line=1, column=1)
    _check_step_kinds(data, source)
    _check_against_schema(data, source)
    return _build(data, source, file_path.resolve().parent)


def _check_step_kinds(data: dict, source: SourceMap) -> None:
    """A step is of one kind: `prompt` and `call` together is told before the schema check (which would
    only call the other kind's keys unknown). A step of no kind is told once it passed (`_builtin_kind`)."""
    steps = data.get("steps")
    if not isinstance(steps, dict):
        return
    kinds = (*BUILTIN_KINDS, *registered_kinds())
    problems = []
    for step_id, raw in steps.items():
        raw = raw if raw is not None else {}
        if not isinstance(raw, dict):
            continue
        marked = [(kind, next(key for key in kind.keys if key in raw)) for kind in kinds if kind.keys_in(raw)]
        if not marked and any(key in raw for key in _code_only_keys()):  # `args` without `call`: say what is missing
            problems.append(_kindless(step_id, source))
        if len(marked) > 1:
            (first, first_key), (second, second_key) = marked[:2]
            problems.append(
                source.error(
                    f"step '{step_id}' sets both `{first_key}` (a {first.name} step) and `{second_key}` "
                    f"(a {second.name} step); a step is one kind: keep one, or make two steps",
                    ("steps", step_id, second_key),
                    key=True,
                    field=second_key,
                )
            )
    if problems:
        raise problems[0] if len(problems) == 1 else SpecErrors(problems)


def _check_against_schema(data: dict, source: SourceMap) -> None:
    errors = sorted(pipeline_schema_validator().iter_errors(data), key=lambda error: list(error.absolute_path))
    problems = []
    for error in errors:
        problems.extend(explain(error, source))
    if problems:
        unique = {(p.line, p.column, p.reason): p for p in problems}
        ordered = sorted(unique.values(), key=lambda p: (p.line or 0, p.column or 0))
        raise ordered[0] if len(ordered) == 1 else SpecErrors(ordered)


def _build(data: dict, source: SourceMap, folder: Path) -> PipelineSpec:
    errors: list[SpecError] = []
    defaults = data.get("defaults") or {}
    input_schema = data.get("input")
    if input_schema is not None:
        errors.extend(metaschema_problems(input_schema, ("input",), source, strict=False))
    steps = []
    for step_id, raw in data["steps"].items():
        try:
            step = StepInput(step_id, raw or {}, defaults, data["name"], source, folder)
            built = (kind_of(step.raw) or _builtin_kind(step)).build(step)
            if "for_each" in step.raw and built.for_each is None:  # a builder that skipped step.base()
                raise source.error(
                    f"step '{step_id}': steps of kind '{built.kind}' do not take `for_each` yet",
                    (*step.here, "for_each"),
                    key=True,
                    field="for_each",
                )
            steps.append(built)
        except SpecErrors as exc:
            errors.extend(exc.errors)
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise errors[0] if len(errors) == 1 else SpecErrors(errors)
    return PipelineSpec(
        name=data["name"],
        description=data.get("description", ""),
        path=source.path,
        input_schema=freeze(input_schema),
        steps=tuple(steps),
        output=data.get("output"),
        source=source,
    )


def _builtin_kind(step: StepInput) -> StepKind:
    if CODE.keys_in(step.raw):
        return CODE
    if not CHAT.keys_in(step.raw):
        raise _kindless(step.id, step.source)
    return CHAT


def _kindless(step_id: str, source: SourceMap) -> SpecError:
    return source.error(
        f"step '{step_id}' has no prompt and no call: a chat step needs `prompt:` (a Jinja template) "
        "or `prompt_file:`, a code step `call: module:function`",
        ("steps", step_id),
        key=True,
        field="prompt",
    )


@cache
def _code_only_keys() -> frozenset[str]:
    """Keys only a code step takes (`args`, ...): without `call`, the step lacks its kind, not a valid key."""
    steps = file_schema()["$defs"]
    return frozenset(steps["code_step"]["properties"]) - set(steps["chat_step"]["properties"]) - set(CODE.keys)
