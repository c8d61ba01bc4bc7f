"""Request bodies: a tuning parameter goes only to a model whose catalogue entry lists it."""

from __future__ import annotations

from runner.chat.catalog import bundled_catalog
from runner.chat.messages import Message
from runner.chat.request import OutputMode, build_body
from runner.run.budget import worst_case_cost
from runner.spec import load_spec

from .conftest import write_pipeline

PIPELINE = """
name: p
defaults:
  temperature: 0.3
  max_tokens: 500
  reasoning: {effort: none}
steps:
  ask:
    model: openai/gpt-5-mini
    prompt: "Say hi"
"""


def body_for(tmp_path, model: str, catalog=None) -> dict:
    step = load_spec(write_pipeline(tmp_path, PIPELINE)).steps[0]
    info = (catalog or bundled_catalog()).models.get(model)
    return build_body(
        step,
        (Message.text_message("user", "Say hi"),),
        model,
        schema=None,
        mode=OutputMode.TEXT,
        user_id="u",
        supported_parameters=info.supported_parameters if info else None,
    )


def test_a_model_without_reasoning_gets_no_reasoning(tmp_path):
    body = body_for(tmp_path, "meta-llama/llama-3.1-8b-instruct")
    assert "reasoning" not in body and body["temperature"] == 0.3 and body["max_tokens"] == 500


def test_a_reasoning_model_gets_reasoning(tmp_path):
    assert body_for(tmp_path, "google/gemini-2.5-flash")["reasoning"] == {"effort": "none"}


def test_a_model_without_temperature_gets_none(tmp_path):
    body = body_for(tmp_path, "openai/gpt-5-mini")  # OpenAI's reasoning models refuse temperature
    assert "temperature" not in body and body["reasoning"] == {"effort": "none"}


def test_a_model_missing_from_the_catalogue_gets_every_setting(tmp_path):
    body = body_for(tmp_path, "acme/unknown-model")
    assert (body["temperature"], body["max_tokens"], body["reasoning"]) == (0.3, 500, {"effort": "none"})


def test_without_max_tokens_the_worst_case_is_the_models_output_limit(tmp_path):
    info = bundled_catalog().models["google/gemini-2.5-flash"]
    body = body_for(tmp_path, "google/gemini-2.5-flash")
    capped = worst_case_cost(body, info)
    del body["max_tokens"]
    assert worst_case_cost(body, info) > capped  # never an unbounded request priced as free output
