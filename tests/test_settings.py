"""OpenRouter's settings in the pipeline file: sampling, transforms and plugins sent as written and
checked against the published schema at load time; model variants and presets; web-search
annotations in step results and templates."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from runner import load_pipeline
from runner.chat.catalog import bundled_catalog
from runner.chat.messages import Message
from runner.chat.request import OutputMode, build_body
from runner.check.rules import lint
from runner.errors import SpecError
from runner.fake.server import mock_transport
from runner.run.budget import body_prompt_tokens, worst_case_cost
from runner.spec.load import SCHEMA_PATH
from runner.spec.model_ids import base_model, is_preset, split_variant

from .conftest import cost_rows, invoke, openrouter_request_validator, write_pipeline

EVERY_SETTING = """
name: every-setting
defaults:
  model: meta-llama/llama-3.1-8b-instruct
  top_p: 0.9
  top_k: 40
  min_p: 0.05
  seed: 7
  stop: ["\\n\\nEND"]
  frequency_penalty: 0.2
  presence_penalty: 0.1
  repetition_penalty: 1.1
  transforms: [middle-out]
  plugins:
    - {id: web, engine: exa, max_results: 3, include_domains: [docs.example.com]}
    - {id: response-healing}
    - {id: file-parser, pdf: {engine: cloudflare-ai}}
  provider: {order: [deepinfra], allow_fallbacks: false, sort: price}
steps:
  first:
    prompt: "Say hi to {{ input.name }}"
  second:
    seed: null
    top_k: 5
    stop: END
    plugins: [{id: response-healing}]
    prompt: "Again: {{ steps.first.output }}"
"""


def _body(pipeline, step_id, supported=None, model=None):
    step = pipeline.spec.step(step_id)
    messages = (Message.text_message("user", "hello"),)
    return build_body(
        step,
        messages,
        model or step.model,
        schema=None,
        mode=OutputMode.TEXT,
        user_id="u1",
        supported_parameters=supported,
    )


def test_the_shipped_settings_schema_is_the_published_one_made_strict():
    """pipeline.schema.json's `$defs/openrouter_settings` is generated from OpenRouter's published ChatRequest;
    it must not drift from it (regenerate with tests/data/extract_openrouter_settings.py)."""
    script = Path(__file__).parent / "data" / "extract_openrouter_settings.py"
    spec = importlib.util.spec_from_file_location("extract_openrouter_settings", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    published = json.loads(module.PUBLISHED.read_text(encoding="utf-8"))
    shipped = SCHEMA_PATH.read_text(encoding="utf-8")
    assert shipped == module.render(published, shipped)


def test_every_setting_is_sent_as_the_field_of_the_same_name_and_fits_the_published_schema(tmp_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, EVERY_SETTING))
    body = _body(pipeline, "first")  # the model's parameters unknown: everything is sent
    assert body["top_p"] == 0.9 and body["top_k"] == 40 and body["min_p"] == 0.05 and body["seed"] == 7
    assert body["stop"] == ["\n\nEND"] and body["repetition_penalty"] == 1.1
    assert body["frequency_penalty"] == 0.2 and body["presence_penalty"] == 0.1
    assert body["transforms"] == ["middle-out"]
    assert [plugin["id"] for plugin in body["plugins"]] == ["web", "response-healing", "file-parser"]
    assert body["plugins"][0] == {
        "id": "web",
        "engine": "exa",
        "max_results": 3,
        "include_domains": ["docs.example.com"],
    }
    assert body["provider"] == {"order": ["deepinfra"], "allow_fallbacks": False, "sort": "price"}
    errors = [error.message for error in openrouter_request_validator().iter_errors(body)]
    assert errors == []
    # A step overrides `defaults` key by key; null unsets an inherited value.
    second = _body(pipeline, "second")
    assert "seed" not in second and second["top_k"] == 5 and second["stop"] == "END"
    assert second["plugins"] == [{"id": "response-healing"}] and second["top_p"] == 0.9
    assert list(openrouter_request_validator().iter_errors(second)) == []


def test_sampling_parameters_a_model_does_not_list_are_left_out_but_plugins_are_sent(tmp_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, EVERY_SETTING))
    info = bundled_catalog().models["meta-llama/llama-3.1-8b-instruct"]
    body = _body(pipeline, "first", supported=info.supported_parameters)
    assert {"top_p", "top_k", "seed", "stop", "frequency_penalty", "presence_penalty"} <= set(body)
    assert "min_p" not in body and "repetition_penalty" not in body
    assert body["transforms"] == ["middle-out"] and len(body["plugins"]) == 3


def test_settings_reach_the_fake_and_pass_its_schema_check(fake, settings, tmp_path, db_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, EVERY_SETTING))
    result = asyncio.run(pipeline.run({"name": "Ada"}, settings=settings, transport=mock_transport(fake)))
    assert result.status == "ok"
    first, second = fake.chat_bodies()
    assert first["top_k"] == 40 and first["seed"] == 7 and "min_p" not in first  # llama does not list min_p
    assert second["top_k"] == 5 and "seed" not in second
    # The web plugin asked for 3 results: the fake bills the search on top of the tokens.
    rows = cost_rows(db_path)
    assert rows[0]["cost_usd"] == pytest.approx(rows[0]["upstream_cost_usd"] + 3 * 0.004)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("plugins: [{id: web, max_result: 3}]", ["unknown key 'max_result'", "did you mean 'max_results'?", ":6:"]),
        ("provider: {only: [anthropic], ignroe: [x]}", ["unknown key 'ignroe'", "did you mean 'ignore'?", ":6:"]),
        ("top_k: 2.5", ["top_k must be an integer", ":6:"]),
        ("seed: lucky", ["seed must be an integer", ":6:"]),
        ("plugins: [{engine: exa}]", ["missing required key 'id'", ":6:"]),
        ("provider: {max_price: {prompt: 1, completion: 2, tokens: 3}}", ["unknown key 'tokens'", ":6:"]),
    ],
)
def test_a_bad_setting_is_a_load_error_naming_the_key_file_and_line(tmp_path, setting, words):
    text = f"name: bad\nsteps:\n  a:\n    model: openai/gpt-4o-mini\n    prompt: hi\n    {setting}\n"
    path = write_pipeline(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_pipeline(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_model_variants_and_presets_are_read_apart():
    assert split_variant("anthropic/claude-haiku-4.5:online") == ("anthropic/claude-haiku-4.5", "online")
    assert base_model("meta-llama/llama-3.1-8b-instruct:free") == "meta-llama/llama-3.1-8b-instruct"
    assert base_model("openai/gpt-4o-mini:turbo") == "openai/gpt-4o-mini:turbo"  # not a variant
    assert is_preset("@preset/support-triage") and not is_preset("openai/gpt-4o-mini")


def test_validate_checks_a_variant_as_its_base_model_and_warns_on_a_preset(tmp_path):
    text = (
        "name: v\nsteps:\n"
        "  a: {model: 'anthropic/claude-haiku-4.5:nitro', prompt: hi, max_tokens: 999999}\n"
        "  b: {model: 'openai/gpt-4o-mini:floor', prompt: hi}\n"
        "  c: {model: '@preset/triage', prompt: hi}\n"
        "  d: {model: 'openai/gpt-4o-nano:online', prompt: hi}\n"
    )
    pipeline = load_pipeline(write_pipeline(tmp_path, text))
    findings = {(f.step, f.severity): f.message for f in lint(pipeline.spec, pipeline.graph, bundled_catalog())}
    # The base model's limit applies to its variant; the variant itself is known.
    assert "max_tokens 999999 is above" in findings[("a", "error")]
    assert ("b", "error") not in findings
    assert "is a preset" in findings[("c", "warning")] and ("c", "error") not in findings
    assert "unknown model 'openai/gpt-4o-nano:online'" in findings[("d", "error")]


def test_a_variant_is_priced_as_its_base_model_by_the_budget_the_dry_run_and_the_ledger(
    capsys, monkeypatch, fake_server, tmp_path, db_path
):
    path = write_pipeline(
        tmp_path, "name: v\nsteps:\n  a:\n    model: 'openai/gpt-4o-mini:nitro'\n    prompt: 'Hi {{ input.n }}'\n"
    )
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-test")
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    dry = invoke(capsys, monkeypatch, "run", str(path), "--input", "n=1", "--dry-run")
    assert dry.code == 0 and "openai/gpt-4o-mini:nitro" in dry.out and "not priced" not in dry.out + dry.err
    run = invoke(capsys, monkeypatch, "run", str(path), "--input", "n=1", "--max-cost", "1", "--db", str(db_path))
    assert run.code == 0, run.err
    [row] = cost_rows(db_path)
    assert row["requested_model"] == "openai/gpt-4o-mini:nitro" and row["cost_usd"] > 0
    assert fake_server.fake.chat_bodies()[0]["model"] == "openai/gpt-4o-mini:nitro"


WEB = """
name: cite
steps:
  research:
    model: google/gemini-2.5-flash
    plugins: [{id: web, max_results: 4}]
    prompt: "What is new in {{ input.topic }}?"
  online:
    model: "openai/gpt-4o-mini:online"
    prompt: "And in {{ input.topic }} elsewhere?"
  sources:
    model: google/gemini-2.5-flash-lite
    prompt: |
      List these sources:
      {% for note in steps.research.annotations %}- {{ note.url_citation.title }}: {{ note.url_citation.url }}
      {% endfor %}
output:
  answer: "{{ steps.research.output }}"
  urls: "{{ steps.research.annotations | map(attribute='url_citation') | map(attribute='url') | list }}"
  online_urls: "{{ steps.online.annotations | length }}"
  plain: "{{ steps.sources.annotations | length }}"
"""


def test_web_search_annotations_reach_templates_and_survive_the_response_cache(fake, settings, tmp_path):
    pipeline = load_pipeline(write_pipeline(tmp_path, WEB))
    result = asyncio.run(pipeline.run({"topic": "rust"}, settings=settings, transport=mock_transport(fake)))
    assert result.status == "ok", result.error
    urls = result.output["urls"]
    assert len(urls) == 2 and all(url.startswith("https://") for url in urls)
    assert result.output["online_urls"] == 2 and result.output["plain"] == 0
    notes = result.steps["research"].annotations
    assert [note.type for note in notes] == ["url_citation", "url_citation"] and notes[0].url == urls[0]
    sources_prompt = fake.chat_bodies()[-1]["messages"][-1]["content"]
    assert urls[0] in sources_prompt and urls[1] in sources_prompt
    again = asyncio.run(pipeline.run({"topic": "rust"}, settings=settings, transport=mock_transport(fake)))
    assert again.output == result.output and len(fake.chat_bodies()) == 3  # from the cache, with its citations


def test_a_reference_to_a_missing_step_field_still_names_annotations(tmp_path):
    text = "name: x\nsteps:\n  a: {model: openai/gpt-4o-mini, prompt: hi}\noutput: '{{ steps.a.anotations }}'\n"
    with pytest.raises(SpecError, match="did you mean 'annotations'"):
        load_pipeline(write_pipeline(tmp_path, text))


def test_the_budget_reserves_a_web_searchs_fee_and_a_cache_writes_premium():
    catalog = bundled_catalog()
    plain = {"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    searching = {**plain, "plugins": [{"id": "web", "max_results": 10}]}
    online = {**plain, "model": "google/gemini-2.5-flash:online"}
    info = catalog.models["google/gemini-2.5-flash"]
    assert worst_case_cost(searching, info) == pytest.approx(worst_case_cost(plain, info) + 10 * 0.004)
    assert worst_case_cost(online, info) == pytest.approx(worst_case_cost(plain, info) + 5 * 0.004)
    sonnet = catalog.models["anthropic/claude-sonnet-4.5"]
    tokens = body_prompt_tokens(plain)
    assert worst_case_cost(plain, sonnet) == pytest.approx(tokens * 3.75e-6 + 10 * 15e-6)
