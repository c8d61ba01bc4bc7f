"""--dry-run: render every prompt of every record, call nothing, and estimate the cost range.

A step's own output does not exist yet in a dry run, so templates downstream of it see a
stand-in: schema-valid values for schema steps (the same synthesis as `--mock`), empty text for
text steps, a value with every property for other kinds' steps without a schema (code steps).
A schema no value can be made for is reported in `stand_in_problems`. Steps behind a
`when` are counted as possible calls. Fallback models and re-asks are not counted.

A step with tools is one call in the low estimate (the model may answer at once) and `max_tool_rounds`
calls in the high one (each round a request with the tool definitions in its prompt, priced here at the
first round's prompt: the tool results later rounds carry are not known before the tools run).

With `--batch-api`, the requests that would go through the Batch API (a batchable step's, without
attachments) are priced at half the normal price, as the Batch API typically bills. A request with a
prompt-cache breakpoint (prompt_cache on a model that needs breakpoints, a long stable system prefix)
prices its marked prefix at the cache-write price in the high estimate, and in the low one at the
write price for the step's first request and the cache-read price after it.

A map step (`for_each`) is counted once per element. A list from `input` has its real length; a list
from an earlier step is read from that step's stand-in, so its length is assumed, and `assumptions`
says how many elements were assumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..chat.catalog import Catalog, ModelInfo
from ..chat.messages import TOKENS_PER_MESSAGE, Message, TextPart
from ..chat.request import build_body
from ..errors import AttachmentError, InputError, RenderError, SynthesisError
from ..plan.attachments import with_attachments
from ..plan.refs import references
from ..plan.render import Renderer
from ..plan.synth import synthesize
from ..spec.model import ChatStep, PipelineSpec, StepBase, thaw
from .batch_values import batchable, text_only
from .budget import body_images, body_prompt_tokens, parsing_cost
from .files import AttachmentFiles, attachment_parts
from .inputs import InputItem


@dataclass
class EstimateRow:
    step: str
    model: str
    calls: int = 0
    max_calls: int = 0  # with every tool round a step may take (`max_tool_rounds`)
    prompt_tokens: int = 0
    max_completion_tokens: int = 0
    low_usd: float = 0.0  # prompt tokens only
    high_usd: float = 0.0  # prompt tokens plus max_tokens
    priced: bool = True
    batched_calls: int = 0  # calls priced at the Batch API's price (--batch-api)
    cache_prefix_tokens: int = 0  # the largest prompt-cache prefix a call of the step marks
    cache_written: bool = False  # the low estimate: the step's first marked request has written the cache


@dataclass
class Estimate:
    rows: list[EstimateRow]
    records: int = 0
    invalid_records: int = 0
    render_errors: int = 0
    attachment_problems: list[str] = field(default_factory=list)  # records whose attachments would be refused
    stand_in_problems: list[str] = field(default_factory=list)  # "step X: why no valid stand-in"
    failing_lists: int = 0  # records whose for_each gives no list, or one longer than max_items
    assumptions: list[str] = field(default_factory=list)  # how many elements a map step over a stand-in assumed
    tool_rounds: list[str] = field(default_factory=list)  # how the high estimate counts each tool step's rounds
    batch_api: bool = False  # priced as `--batch-api` would run it

    @property
    def low_usd(self) -> float:
        return sum(row.low_usd for row in self.rows)

    @property
    def high_usd(self) -> float:
        return sum(row.high_usd for row in self.rows)


def estimate(
    spec: PipelineSpec,
    renderer: Renderer,
    catalog: Catalog,
    items: Iterable[InputItem],
    check_input,
    files: AttachmentFiles | None = None,
    *,
    batch_api: bool = False,
) -> Estimate:
    """`batch_api`: price the requests the Batch API would carry at its price (the caller leaves it off
    when the run would stream, since a streamed run uses the normal API)."""
    calls = [step for step in spec.steps if isinstance(step, ChatStep)]  # the steps that call a model
    rows = {step.id: EstimateRow(step.id, step.models[0]) for step in calls}
    result = Estimate(rows=list(rows.values()), batch_api=batch_api)
    stand_ins = {step.id: _stand_in(step, result.stand_in_problems) for step in spec.steps}
    schemas = {step.id: thaw(step.schema) if step.schema is not None else None for step in calls}
    assumed = {step.id: [0, 0] for step in calls if _over_stand_ins(step)}  # step -> [elements, records]
    for item in items:
        if item.problem is not None:
            result.invalid_records += 1
            continue
        try:
            record = check_input(item.record, key=str(item.key))
        except InputError:
            result.invalid_records += 1
            continue
        result.records += 1
        context = {"input": record, "steps": stand_ins}
        for step in calls:
            scopes = _element_contexts(step, renderer, context, result)
            if step.id in assumed:
                assumed[step.id][0] += len(scopes)
                assumed[step.id][1] += 1
            for scoped in scopes:
                try:
                    messages = renderer.messages(step, scoped)
                    if step.attachments:  # read and checked as the run will: images and PDFs are priced
                        parts = attachment_parts(renderer.attachments(step, scoped), files)
                        messages = with_attachments(messages, parts)
                except RenderError:
                    result.render_errors += 1
                    continue
                except AttachmentError as exc:
                    result.attachment_problems.append(f"record {item.key}: {exc}")
                    continue
                _count(rows[step.id], step, messages, schemas[step.id], catalog, batch_api)
    result.tool_rounds = [
        f"step '{step.id}' may call its tools: the high estimate counts max_tool_rounds ({step.max_tool_rounds}) "
        "requests a call, each with the tool definitions in its prompt (tool results not counted)"
        for step in calls
        if _tool_rounds(step) > 1
    ]
    for step_id, (elements, records) in assumed.items():
        step = spec.step(step_id)
        result.assumptions.append(
            f"step '{step_id}': its for_each list comes from an earlier step, which a dry run does not run; "
            f"assumed {elements / records:g} element(s) a record (the stand-in's list; max_items "
            f"{step.for_each.max_items})"
            if records
            else f"step '{step_id}': its for_each list comes from an earlier step; no record reached it"
        )
    return result


class _AnyJSON(dict):
    """The stand-in of a step whose output may be any JSON (a code step without a schema): every property
    and element of it is another such stand-in, so downstream prompts render and are priced."""

    def __missing__(self, key):
        return _AnyJSON()


def _element_contexts(step: ChatStep, renderer: Renderer, context: dict, result: Estimate) -> list[dict]:
    """The contexts the step renders in: one, or one per element of a map step's list."""
    if step.for_each is None:
        return [context]
    try:
        elements = renderer.items(step, context)
    except RenderError:
        result.render_errors += 1
        return []
    if not isinstance(elements, list | tuple) or len(elements) > step.for_each.max_items:
        result.failing_lists += 1
        return []
    name = step.for_each.name
    return [{**context, name: element, "item_index": index} for index, element in enumerate(elements)]


def _over_stand_ins(step: StepBase) -> bool:
    """A map step whose list is read from an earlier step (a stand-in in a dry run), not only from `input`."""
    return step.for_each is not None and bool(references(step.for_each.items))


def _tool_rounds(step: ChatStep) -> int:
    """The requests one call of the step may make: each tool round is one."""
    return step.max_tool_rounds if step.tools and step.tool_choice != "none" else 1


BATCH_PRICE_FACTOR = 0.5  # the Batch API typically bills half the normal price


def _count(row: EstimateRow, step: ChatStep, messages, schema, catalog: Catalog, batch_api: bool) -> None:
    mode = catalog.output_mode(step.model, schema is not None)
    body = build_body(step, messages, step.model, schema=schema, mode=mode, user_id=None)
    tokens = body_prompt_tokens(body)
    rounds = _tool_rounds(step)
    batched = batch_api and batchable(step) and text_only(body)
    cached = cache_prefix_tokens(body)
    row.calls += 1
    row.max_calls += rounds
    row.prompt_tokens += tokens
    row.max_completion_tokens += step.max_tokens
    row.batched_calls += batched
    row.cache_prefix_tokens = max(row.cache_prefix_tokens, cached)
    info = catalog.models.get(step.model)
    if info is None:
        row.priced = False
        return
    media = body_images(body) * info.image_price + parsing_cost(body)
    low = tokens * info.prompt_price + media + info.request_price
    write, read = _cache_premiums(info, cached)
    factor = BATCH_PRICE_FACTOR if batched else 1.0
    row.low_usd += factor * (low + (read if row.cache_written else write))
    row.high_usd += factor * rounds * (low + write + step.max_tokens * info.completion_price)
    row.cache_written = row.cache_written or cached > 0


def _cache_premiums(info: ModelInfo, cached: int) -> tuple[float, float]:
    """What writing, and reading, `cached` prompt tokens costs on top of (or below) the prompt price."""
    write = info.cache_write_price if info.cache_write_price is not None else info.prompt_price
    read = info.cache_read_price if info.cache_read_price is not None else info.prompt_price
    return cached * (write - info.prompt_price), cached * (read - info.prompt_price)


def cache_prefix_tokens(body: dict) -> int:
    """The prompt tokens up to the body's last `cache_control` breakpoint (0 without one), estimated as
    the budget estimates prompts."""
    tokens, marked = 0.0, 0.0
    for message in map(Message.from_wire, body["messages"]):
        tokens += TOKENS_PER_MESSAGE
        for part in message.parts:
            tokens += part.estimated_tokens()
            if isinstance(part, TextPart) and part.cache_control is not None:
                marked = tokens
    return round(marked)


def _stand_in(step: StepBase, problems: list[str]) -> dict:
    output = "" if isinstance(step, ChatStep) else _AnyJSON()
    schema = step.output_schema
    if schema is not None:
        try:
            output = synthesize(thaw(schema), hashlib.sha256(step.id.encode()).digest())
        except SynthesisError as exc:
            output = exc.closest  # still renders downstream prompts; the problem is reported
            problems.append(f"step '{step.id}': {exc}")
    return {
        "output": [output] if step.for_each is not None else output,  # a map step's: a list of one element
        "model": next(iter(step.models), None),
        "cost_usd": 0.0,
        "usage": None,
        "reasoning": None,
        "status": "ok",
        "annotations": [],
    }
