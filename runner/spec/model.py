"""The pipeline file's frozen values: the pipeline, its steps (a small family of kinds sharing
`StepBase`), templates, reasoning and rate limits; `freeze` and `thaw` between them and plain
JSON-like values. Every value here pickles, so a loaded pipeline can travel to another process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from .yamlmarks import SourceMap


@dataclass(frozen=True)
class Reasoning:
    effort: str | None = None
    max_tokens: int | None = None
    exclude: bool | None = None

    def as_body(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in (("effort", self.effort), ("max_tokens", self.max_tokens), ("exclude", self.exclude))
            if value is not None
        }


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float


@dataclass(frozen=True)
class Template:
    """A Jinja source and where it came from, so template errors can point at a line."""

    source: str
    path: str
    line: int
    field: str  # as written: `prompt`, `prompt_file`, `system`, `when`, `output.reply`
    step: str | None = None  # None for `output`
    named_at: str | None = None  # for a prompt_file: "pipeline.yaml:12", where the file is named
    file_lines: tuple[str, ...] = ()  # the lines of `path` the template is written on, from `line`

    @property
    def label(self) -> str:
        """How messages name it: `prompt` of step 'classify', `output.reply`, or a prompt_file and where it is named."""
        label = f"`{self.field}` of step '{self.step}'" if self.step else f"`{self.field}`"
        return f"{label} (named at {self.named_at})" if self.named_at else label

    def column_of(self, text: str, line: int) -> int | None:
        """The file column of `text` on `line`, when it is written there once (Jinja itself reports no columns)."""
        index = line - self.line
        if not 0 <= index < len(self.file_lines) or self.file_lines[index].count(text) != 1:
            return None
        return self.file_lines[index].index(text) + 1


class FrozenDict(dict):
    """A read-only dict: JSON encoders and jsonschema take it as it is, and it pickles (a MappingProxyType does not)."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs) -> NoReturn:
        raise TypeError("a FrozenDict cannot be changed")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple:
        return FrozenDict, (dict(self),)

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


EMPTY: FrozenDict = FrozenDict()


@dataclass(frozen=True)
class AttachmentSpec:
    """One entry of a chat step's `attachments`: a template giving a URL, a data: URL or a file path (or a
    list of them), and the type written beside it (`image`, `pdf`, `audio`) when the name does not tell."""

    template: Template
    type: str | None = None


@dataclass(frozen=True)
class Tool:
    """A Python function a chat step offers the model: what the model is told (name, description,
    JSON Schema of the parameters) and where the function lives (`call`, looked up from `folder`)."""

    name: str
    call: str  # module:function
    description: str | None
    parameters: FrozenDict
    folder: str  # the pipeline file's folder: the module is looked for there first, then on sys.path


@dataclass(frozen=True)
class ForEach:
    """`for_each` on a step: the list it maps over, its element's name in templates (`as`), the most
    elements it takes, and whether a failed element fails the step or becomes null in the list."""

    KEYS: ClassVar[tuple[str, ...]] = ("as", "max_items", "on_item_error")  # written beside `for_each`

    items: Template  # the `for_each` expression; evaluated once per record, it must give a list
    name: str = "item"
    max_items: int = 100
    on_item_error: str = "fail"  # fail | skip


@dataclass(frozen=True, kw_only=True)
class StepBase:
    """What every step kind shares: its id, the steps it waits for, its `when` guard, its line, and
    `for_each` when it maps over a list.

    A kind subclasses this with its own settings and names itself in `kind`; what the rest of the
    package asks of a step (the models it may call, the templates it holds) is answered here.
    """

    kind: ClassVar[str]
    id: str
    needs: tuple[str, ...] = ()
    when: Template | None = None
    line: int = 1
    for_each: ForEach | None = None  # a map step: runs once per element, its output the list of theirs

    @property
    def models(self) -> tuple[str, ...]:
        """The models this step may call, first choice first: budgets, dry runs, lint and diagrams read them."""
        return ()

    @property
    def output_schema(self) -> FrozenDict | None:
        """The JSON Schema of the step's output, when it has one: references into it are checked against it."""
        return None

    def templates(self) -> tuple[Template, ...]:
        """Every Jinja template of the step, so references, the graph and lint see them all."""
        found = (self.when,) if self.when is not None else ()
        return found + ((self.for_each.items,) if self.for_each is not None else ())


@dataclass(frozen=True, kw_only=True)
class ChatStep(StepBase):
    """One chat completion through OpenRouter, with fallbacks and re-asks (the `prompt`/`prompt_file` kind)."""

    kind: ClassVar[str] = "chat"
    module: str
    model: str
    fallback_models: tuple[str, ...]
    fallback_mode: str
    temperature: float
    reasoning: Reasoning
    max_tokens: int
    provider: FrozenDict | None
    retries: int
    repair_attempts: int
    timeout_s: float
    rate_limit: RateLimit | None
    prompt: Template
    system: Template | None
    schema: FrozenDict | None
    attachments: tuple[AttachmentSpec, ...] = ()
    pdf_engine: str | None = None  # OpenRouter's file-parser plugin engine
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # auto | required | none | a tool's name
    max_tool_rounds: int = 5  # requests the tool loop may make before the step fails
    # OpenRouter request fields sent as written (None: not sent); the sampling ones only to models that list them.
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: str | tuple[str, ...] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    transforms: tuple[str, ...] | None = None
    plugins: tuple[FrozenDict, ...] | None = None
    prompt_cache: bool = True  # `auto`: cache breakpoints where the model needs them; `off`: none
    batch: bool = True  # with --batch-api, its requests may go through the Batch API (`batch: false` opts out)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model, *self.fallback_models)

    @property
    def output_schema(self) -> FrozenDict | None:
        return self.schema

    def templates(self) -> tuple[Template, ...]:
        fixed = (*(template for template in (self.system, self.prompt) if template is not None), *super().templates())
        return fixed + tuple(attachment.template for attachment in self.attachments)


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    path: str
    input_schema: FrozenDict | None
    steps: tuple[StepBase, ...]
    output: Any
    source: SourceMap

    def step(self, step_id: str) -> StepBase:
        return next(step for step in self.steps if step.id == step_id)

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(step.id for step in self.steps)

    @property
    def makes_calls(self) -> bool:
        """Whether any step may call a model: a pipeline of code steps alone needs no API key and no catalogue."""
        return any(step.models for step in self.steps)


def freeze(value: Any) -> Any:
    """Read-only copies of the JSON-like values kept in the spec."""
    if isinstance(value, dict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again, for JSON encoding and jsonschema."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(item) for item in value]
    return value
