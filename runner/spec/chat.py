"""The chat step as the file writes it: `prompt` or `prompt_file`, the model settings inherited from
`defaults`, an optional output schema; built into a frozen ChatStep."""

from __future__ import annotations

from .kinds import StepInput, StepKind, inline_template, inside, template_line
from .model import AttachmentSpec, ChatStep, FrozenDict, RateLimit, Reasoning, Template, freeze
from .settings_schema import REQUEST_FIELDS
from .stepschema import load_step_schema
from .tools import build_tool_settings

# Values a step gets when neither it nor `defaults` sets them. Temperature, reasoning and
# max_tokens are always sent explicitly, so a run never depends on a provider's defaults.
BUILTIN_SETTINGS = FrozenDict(
    {
        "fallback_models": (),
        "fallback_mode": "client",
        "temperature": 1.0,
        "reasoning": FrozenDict({"effort": "low"}),
        "max_tokens": 1024,
        "provider": None,
        "retries": 3,
        "repair_attempts": 1,
        "timeout_s": 120.0,
        "rate_limit": None,
        "pdf_engine": None,
        # OpenRouter's own settings, sent only when set (spec/settings_schema.py checks them).
        **dict.fromkeys(REQUEST_FIELDS),
        "prompt_cache": "auto",
        "batch": True,
    }
)


def build_chat_step(step: StepInput) -> ChatStep:
    raw, source, step_id, here = step.raw, step.source, step.id, step.here
    settings = {**BUILTIN_SETTINGS, "module": step.pipeline_name, **step.defaults, **raw}
    if "model" not in settings:
        raise source.error(
            f"step '{step_id}' has no model: set `model` in the step or in `defaults`", here, key=True, field="model"
        )
    if "prompt" in raw and "prompt_file" in raw:
        raise source.error(
            f"step '{step_id}' sets both `prompt` and `prompt_file`; keep one", (*here, "prompt_file"), key=True
        )
    if "prompt" in raw:
        prompt = step.template("prompt")
    elif "prompt_file" in raw:
        prompt = _prompt_file(step)
    else:
        raise source.error(
            f"step '{step_id}' has no prompt: add `prompt:` (a Jinja template) or `prompt_file:`",
            here,
            key=True,
            field="prompt",
        )
    system = step.template("system") if "system" in raw else None
    schema = load_step_schema(step, strict=True)
    reasoning = settings["reasoning"]
    rate_limit = settings["rate_limit"]
    tools = build_tool_settings(step)
    return ChatStep(
        **step.base(),
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
        attachments=_attachments(step),
        pdf_engine=settings["pdf_engine"],
        tools=tools.tools,
        tool_choice=tools.tool_choice,
        max_tool_rounds=tools.max_tool_rounds,
        batch=bool(settings["batch"]),
        **request_fields(settings),
    )


def _attachments(step: StepInput) -> tuple[AttachmentSpec, ...]:
    """`attachments:` entries, each a template (a string, or `{file: ..., type: ...}`) with its line."""
    entries = []
    for index, entry in enumerate(step.raw.get("attachments") or ()):
        location = (*step.here, "attachments", index)
        if isinstance(entry, str):
            template = inline_template(entry, step.source, location, f"attachments[{index}]", step.id)
            entries.append(AttachmentSpec(template))
        else:
            field = f"attachments[{index}].file"
            template = inline_template(entry["file"], step.source, (*location, "file"), field, step.id)
            entries.append(AttachmentSpec(template, entry.get("type")))
    return tuple(entries)


def request_fields(settings: dict) -> dict:
    """The OpenRouter settings as ChatStep fields: lists frozen, `prompt_cache: off` (YAML's false) as False."""
    fields = {name: freeze(settings[name]) for name in REQUEST_FIELDS if settings[name] is not None}
    fields["prompt_cache"] = settings["prompt_cache"] not in ("off", False)
    return fields


CHAT = StepKind("chat", ("prompt", "prompt_file"), FrozenDict({"$ref": "#/$defs/chat_step"}), build_chat_step)


def _prompt_file(step: StepInput) -> Template:
    raw, source, here = step.raw, step.source, step.here
    prompt_path = inside(step.folder, raw["prompt_file"], source, (*here, "prompt_file"), "prompt_file")
    try:
        prompt_text = prompt_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise source.error(
            f"step '{step.id}': cannot read prompt_file '{raw['prompt_file']}': {exc.strerror or exc}",
            (*here, "prompt_file"),
            field="prompt_file",
        ) from None
    named_at = f"{source.path}:{template_line(source, (*here, 'prompt_file'))}"
    return Template(prompt_text, str(prompt_path), 1, "prompt_file", step.id, named_at, tuple(prompt_text.splitlines()))
