"""Loading the pipeline file: YAML -> checked against runner/data/pipeline.schema.json -> the frozen
values of model.py, each step built by its kind (kinds.py; chat.py when no other kind claims it)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from ..errors import SpecError, SpecErrors
from .chat import CHAT
from .explain import explain
from .kinds import StepInput, StepKind, kind_of, registered_kinds, with_kinds
from .model import PipelineSpec, freeze
from .strict import metaschema_problems
from .yamlmarks import SourceMap, load_yaml

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
    return Draft202012Validator(with_kinds(file_schema(), kinds) if kinds else file_schema())


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
        errors.extend(metaschema_problems(input_schema, ("input",), source, strict=False))
    steps = []
    for step_id, raw in data["steps"].items():
        try:
            step = StepInput(step_id, raw or {}, defaults, data["name"], source, folder)
            built = (kind_of(step.raw) or CHAT).build(step)
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
