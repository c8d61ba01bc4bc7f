"""Loading the pipeline file: YAML -> checked against runner/data/pipeline.schema.json -> the frozen
values of model.py, with defaults inherited and referenced files resolved."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from ..errors import SpecError, SpecErrors
from .explain import explain
from .model import PipelineSpec, RateLimit, Reasoning, StepSpec, Template, freeze
from .strict import strict_mode_problems
from .yamlmarks import SourceMap, load_yaml

# Read through importlib.resources: the schema ships inside the package, so an installed wheel finds it too.
SCHEMA_PATH = files("runner") / "data" / "pipeline.schema.json"

# Values a step gets when neither it nor `defaults` sets them. Temperature, reasoning and
# max_tokens are always sent explicitly, so a run never depends on a provider's defaults.
BUILTIN_SETTINGS = MappingProxyType(
    {
        "fallback_models": (),
        "fallback_mode": "client",
        "temperature": 1.0,
        "reasoning": MappingProxyType({"effort": "low"}),
        "max_tokens": 1024,
        "provider": None,
        "retries": 3,
        "repair_attempts": 1,
        "timeout_s": 120.0,
        "rate_limit": None,
    }
)


@cache
def pipeline_schema_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


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
    _check_against_schema(data, source)
    return _build(data, source, file_path.resolve().parent)


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
        errors.extend(_metaschema_problems(input_schema, ("input",), source, strict=False))
    steps = []
    for step_id, raw in data["steps"].items():
        try:
            steps.append(_build_step(step_id, raw or {}, defaults, data["name"], source, folder))
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


def _build_step(step_id: str, raw: dict, defaults: dict, pipeline_name: str, source: SourceMap, folder: Path):
    here = ("steps", step_id)
    line = source.where(here, key=True)[0] or 1
    settings = {**BUILTIN_SETTINGS, "module": pipeline_name, **defaults, **raw}
    if "model" not in settings:
        raise source.error(
            f"step '{step_id}' has no model: set `model` in the step or in `defaults`", here, key=True, field="model"
        )
    if "prompt" in raw and "prompt_file" in raw:
        raise source.error(
            f"step '{step_id}' sets both `prompt` and `prompt_file`; keep one", (*here, "prompt_file"), key=True
        )
    if "prompt" in raw:
        prompt = inline_template(raw["prompt"], source, (*here, "prompt"), "prompt", step_id)
    elif "prompt_file" in raw:
        prompt_path = _inside(folder, raw["prompt_file"], source, (*here, "prompt_file"), "prompt_file")
        try:
            prompt_text = prompt_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise source.error(
                f"step '{step_id}': cannot read prompt_file '{raw['prompt_file']}': {exc.strerror or exc}",
                (*here, "prompt_file"),
                field="prompt_file",
            ) from None
        named_at = f"{source.path}:{_template_line(source, (*here, 'prompt_file'))}"
        prompt = Template(
            prompt_text, str(prompt_path), 1, "prompt_file", step_id, named_at, tuple(prompt_text.splitlines())
        )
    else:
        raise source.error(
            f"step '{step_id}' has no prompt: add `prompt:` (a Jinja template) or `prompt_file:`",
            here,
            key=True,
            field="prompt",
        )
    system = inline_template(raw["system"], source, (*here, "system"), "system", step_id) if "system" in raw else None
    when = raw.get("when")
    when_template = None
    if when is not None and when is not True:
        # A bare expression (`when: steps.a.output.ok`) means the same as `{{ ... }}`.
        text = "false" if when is False else when
        if "{{" not in text and "{%" not in text:
            text = "{{ " + text + " }}"
        when_template = inline_template(text, source, (*here, "when"), "when", step_id)
    schema = _load_schema(step_id, raw.get("schema"), source, folder)
    reasoning = settings["reasoning"]
    rate_limit = settings["rate_limit"]
    return StepSpec(
        id=step_id,
        module=settings["module"],
        model=settings["model"],
        fallback_models=tuple(model for model in settings["fallback_models"] if model != settings["model"]),
        fallback_mode=settings["fallback_mode"],
        temperature=float(settings["temperature"]),
        reasoning=Reasoning(**reasoning),
        max_tokens=int(settings["max_tokens"]),
        provider=freeze(settings["provider"]),
        retries=int(settings["retries"]),
        repair_attempts=int(settings["repair_attempts"]),
        timeout_s=float(settings["timeout_s"]),
        rate_limit=RateLimit(**rate_limit) if rate_limit else None,
        prompt=prompt,
        system=system,
        schema=freeze(schema),
        when=when_template,
        needs=tuple(raw.get("needs", ())),
        line=line,
    )


def inline_template(text: str, source: SourceMap, location: tuple, field: str, step_id: str | None) -> Template:
    """A template written in the pipeline file at `location`, with the file lines it spans."""
    line = _template_line(source, location)
    span = max(1, len(text.splitlines()))
    return Template(text, source.path, line, field, step_id, None, source.lines[line - 1 : line - 1 + span])


def _template_line(source: SourceMap, location: tuple) -> int:
    """Line of a template's first text line (the source map already skips a block scalar's `|`)."""
    return source.where(location)[0] or 1


def _inside(folder: Path, relative: str, source: SourceMap, location: tuple, field: str) -> Path:
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


def _load_schema(step_id: str, raw: Any, source: SourceMap, folder: Path) -> dict | None:
    if raw is None:
        return None
    location = ("steps", step_id, "schema")
    if isinstance(raw, str):
        schema_path = _inside(folder, raw, source, location, "schema")
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"step '{step_id}': schema file is not valid JSON: {exc.msg}",
                path=str(schema_path),
                line=exc.lineno,
                column=exc.colno,
                field="schema",
            ) from None
        if not isinstance(schema, dict):
            raise source.error(f"step '{step_id}': schema file '{raw}' must hold a JSON object", location)
        problems = _metaschema_problems(schema, location, source, strict=True, file_label=raw)
    else:
        schema = raw
        problems = _metaschema_problems(schema, location, source, strict=True)
    if problems:
        raise problems[0] if len(problems) == 1 else SpecErrors(problems)
    return schema


def _metaschema_problems(
    schema: dict, location: tuple, source: SourceMap, *, strict: bool, file_label: str | None = None
) -> list[SpecError]:
    owner = f"step '{location[1]}' schema" if location[0] == "steps" else "input schema"
    if file_label:
        owner += f" ({file_label})"
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        pointer = "/" + "/".join(str(part) for part in exc.absolute_path)
        inner = location if file_label else (*location, *exc.absolute_path)
        return [source.error(f"{owner} is not a valid JSON Schema at {pointer}: {exc.message}", inner)]
    if not strict:
        return []
    return [
        source.error(
            f"{owner} is not accepted by structured outputs' strict mode at {pointer}: {message}",
            location if file_label else (*location, *_pointer_parts(pointer)),
            key=True,
        )
        for pointer, message in strict_mode_problems(schema)
    ]


def _pointer_parts(pointer: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in pointer.strip("/").split("/") if part)
