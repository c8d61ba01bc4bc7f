"""Prompt caching: breakpoints where the provider needs them, the fake billing writes and reads as
providers do, cache tokens in the ledger, and `pipeline costs` saying what caching saved."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from runner import load_pipeline
from runner.chat.caching import cache_saving, needs_breakpoints
from runner.chat.catalog import bundled_catalog
from runner.chat.messages import Message
from runner.chat.reply import Generation, Usage
from runner.chat.request import OutputMode, build_body
from runner.fake import Fault
from runner.fake.server import mock_transport
from runner.store import Store

from .conftest import cost_rows, invoke, openrouter_request_validator, write_pipeline
from .test_fake import assert_shape, completion, lookups
from .test_store import event

POLICY = "Refunds are accepted within 30 days of delivery when the item is unused. " * 80  # ~1,500 tokens


def _pipeline(tmp_path, model, *, prompt_cache=None, system=POLICY):
    setting = f"    prompt_cache: {prompt_cache}\n" if prompt_cache is not None else ""
    text = (
        f"name: cached\nsteps:\n  answer:\n    model: {model}\n{setting}"
        f"    system: {json.dumps(system)}\n    prompt: 'Customer asks: {{{{ input.q }}}}'\n"
    )
    return load_pipeline(write_pipeline(tmp_path, text))


def _body(pipeline, model=None):
    step = pipeline.spec.step("answer")
    messages = pipeline.renderer.messages(step, {"input": {"q": "Can I return shoes?"}, "steps": {}})
    return build_body(step, messages, model or step.model, schema=None, mode=OutputMode.TEXT, user_id=None)


@pytest.mark.parametrize(
    ("model", "marked"),
    [
        ("anthropic/claude-haiku-4.5", True),
        ("anthropic/claude-sonnet-4.5:nitro", True),
        ("google/gemini-2.0-flash-001", True),  # Gemini before 2.5: explicit caching
        ("google/gemini-2.5-flash", False),  # implicit
        ("openai/gpt-4o-mini", False),  # implicit
        ("meta-llama/llama-3.1-8b-instruct", False),
    ],
)
def test_breakpoints_per_provider(tmp_path, model, marked):
    body = _body(_pipeline(tmp_path, "anthropic/claude-haiku-4.5"), model)
    system = body["messages"][0]
    if marked:
        assert system["content"] == [{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}]
    else:
        assert system["content"] == POLICY  # implicit caching needs nothing: the body as it always was
    assert body["messages"][1]["content"] == "Customer asks: Can I return shoes?"  # the per-record part: never marked
    assert list(openrouter_request_validator().iter_errors(body)) == []
    assert needs_breakpoints(model) is marked


def test_no_breakpoint_when_off_or_when_the_prefix_is_too_short_to_cache(tmp_path):
    for value in ("off", "false"):
        body = _body(_pipeline(tmp_path, "anthropic/claude-haiku-4.5", prompt_cache=value))
        assert body["messages"][0]["content"] == POLICY
    short = _body(_pipeline(tmp_path, "anthropic/claude-haiku-4.5", system="Be brief."))
    assert short["messages"][0]["content"] == "Be brief."


def test_the_breakpoint_closes_the_system_message_after_the_schema_instruction(tmp_path):
    step = _pipeline(tmp_path, "anthropic/claude-haiku-4.5").spec.step("answer")
    messages = (Message.text_message("system", POLICY), Message.text_message("user", "hi"))
    body = build_body(step, messages, step.model, schema={"type": "object"}, mode=OutputMode.PROMPT, user_id=None)
    [part] = body["messages"][0]["content"]
    assert part["text"].startswith(POLICY) and "JSON Schema" in part["text"] and part["cache_control"]


def _priced(model):
    return bundled_catalog().models[model]


def test_the_fake_writes_the_cache_once_then_reads_it_at_the_read_price(fake, settings, tmp_path, db_path):
    pipeline = _pipeline(tmp_path, "anthropic/claude-haiku-4.5")
    for question in ("Can I return shoes?", "And a hat?", "What about socks?"):
        result = asyncio.run(pipeline.run({"q": question}, settings=settings, transport=mock_transport(fake)))
        assert result.status == "ok"
    first, second, third = cost_rows(db_path)
    info = _priced("anthropic/claude-haiku-4.5")
    assert first["cache_write_tokens"] > 1000 and first["cached_tokens"] == 0
    assert second["cached_tokens"] == first["cache_write_tokens"] == third["cached_tokens"]
    assert second["cache_write_tokens"] == 0
    cached = second["cached_tokens"]
    fresh = second["prompt_tokens"] - cached
    expected = fresh * info.prompt_price + cached * info.cache_read_price + second["completion_tokens"] * 5e-6
    assert second["cost_usd"] == pytest.approx(expected)
    written = first["cache_write_tokens"]
    expected_first = (first["prompt_tokens"] - written) * info.prompt_price + written * info.cache_write_price
    assert first["cost_usd"] == pytest.approx(expected_first + first["completion_tokens"] * 5e-6)


def test_without_breakpoints_anthropic_caches_nothing(fake, settings, tmp_path, db_path):
    pipeline = _pipeline(tmp_path, "anthropic/claude-haiku-4.5", prompt_cache="off")
    for question in ("a", "b"):
        asyncio.run(pipeline.run({"q": question}, settings=settings, transport=mock_transport(fake)))
    assert [(row["cached_tokens"], row["cache_write_tokens"]) for row in cost_rows(db_path)] == [(0, 0), (0, 0)]


def test_implicit_caching_reads_a_repeated_prefix_without_a_write_charge(fake, settings, tmp_path, db_path):
    pipeline = _pipeline(tmp_path, "openai/gpt-4o-mini")
    for question in ("a", "b"):
        asyncio.run(pipeline.run({"q": question}, settings=settings, transport=mock_transport(fake)))
    first, second = cost_rows(db_path)
    assert (first["cached_tokens"], first["cache_write_tokens"]) == (0, 0)
    assert second["cached_tokens"] > 1000 and second["cache_write_tokens"] == 0
    assert "cache_control" not in json.dumps(fake.chat_bodies())


def test_cache_saving_from_the_catalogue_prices():
    info = _priced("anthropic/claude-sonnet-4.5")
    assert cache_saving(info, 1000, 0) == pytest.approx(1000 * (3e-6 - 0.3e-6))
    assert cache_saving(info, 0, 1000) == pytest.approx(-1000 * (3.75e-6 - 3e-6))  # a write costs more
    assert cache_saving(info, 0, 0) == 0.0
    assert cache_saving(_priced("meta-llama/llama-3.1-8b-instruct"), 10, 0) is None  # no cache price listed


def _run_dataset(capsys, monkeypatch, fake_server, tmp_path, *extra):
    path = write_pipeline(
        tmp_path,
        "name: cached\nsteps:\n  answer:\n    model: anthropic/claude-sonnet-4.5\n"
        f"    system: {json.dumps(POLICY)}\n    prompt: 'Customer asks: {{{{ input.q }}}}'\n",
    )
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"q": f"question {index}"}) + "\n" for index in range(4)))
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-test")
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    result = invoke(capsys, monkeypatch, "run", str(path), "--inputs", str(inputs), "--concurrency", "1", *extra)
    assert result.code == 0, result.err


def test_costs_show_what_caching_saved_from_the_price_table(capsys, monkeypatch, fake_server, tmp_path, db_path):
    _run_dataset(capsys, monkeypatch, fake_server, tmp_path)
    rows = cost_rows(db_path)
    info = _priced("anthropic/claude-sonnet-4.5")
    saved = sum(
        row["cached_tokens"] * (info.prompt_price - info.cache_read_price)
        - row["cache_write_tokens"] * (info.cache_write_price - info.prompt_price)
        for row in rows
    )
    assert saved > 0 and sum(row["cached_tokens"] for row in rows) > 0
    report = invoke(capsys, monkeypatch, "costs", "--by", "step", "--format", "json")
    [row] = json.loads(report.out)
    assert row["cache_saved_usd"] == pytest.approx(saved) and row["cached_tokens"] == sum(
        r["cached_tokens"] for r in rows
    )
    table = invoke(capsys, monkeypatch, "costs", "--by", "model")
    assert "cache_saved_usd" in table.out and "prompt caching saved: $" in table.out


def test_costs_prefer_openrouters_cache_discount_where_a_generation_was_looked_up(
    capsys, monkeypatch, fake_server, tmp_path, db_path
):
    # Replies without `usage.cost` make the runner look up each generation, cache_discount included.
    fake_server.fake.enqueue(Fault("no_cost", times=4))
    _run_dataset(capsys, monkeypatch, fake_server, tmp_path)
    with sqlite3.connect(db_path) as db:
        looked_up = db.execute("SELECT COUNT(*) FROM generations WHERE cache_discount IS NOT NULL").fetchone()[0]
        assert looked_up == 4  # a write (negative) and three reads
        db.execute("UPDATE generations SET cache_discount = 0.25")  # OpenRouter's word beats the price table
    report = invoke(capsys, monkeypatch, "costs", "--by", "step", "--format", "json")
    [row] = json.loads(report.out)
    assert row["cache_saved_usd"] == pytest.approx(1.0)


def test_cache_usage_reads_the_same_on_both_backends(backend, capsys, monkeypatch):
    model = "anthropic/claude-sonnet-4.5"
    read = Usage(2000, 50, 0, 1500, 2050, 0.002, cache_write_tokens=0)
    written = Usage(2000, 50, 0, 0, 2050, 0.008, cache_write_tokens=1500)
    looked_up = Generation(
        "g2", 0.008, None, -0.001125, False, "Anthropic", None, 1, 1, 2000, 50, 0, 0, "stop", "end_turn"
    )
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(event(id="g1", model=model, usage=read))
        store.add_cost(event(id="g2", model=model, usage=written, generation=looked_up, record_key="2"))
        store.add_cost(event(id="g3", usage=Usage(10, 5, 0, 0, 15, 0.001), record_key="3"))  # nothing cached
        [usage] = store.cache_usage(("step",))
    assert usage["cache_model"] == model and (usage["cached_tokens"], usage["cache_write_tokens"]) == (1500, 1500)
    # The write has OpenRouter's discount; only the read is left for the price table.
    assert (usage["unpriced_cached"], usage["unpriced_written"]) == (1500, 0)
    assert usage["discount_usd"] == pytest.approx(-0.001125)
    schema_args = ("--db-schema", backend[1]) if backend[1] else ()
    report = invoke(capsys, monkeypatch, "costs", "--by", "step", "--format", "json", "--db", backend[0], *schema_args)
    [row] = json.loads(report.out)
    assert row["cache_saved_usd"] == pytest.approx(1500 * (3e-6 - 0.3e-6) - 0.001125)


def test_the_fakes_cache_and_search_replies_keep_openrouters_shapes(fake):
    system = {"role": "system", "content": [{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}]}
    request = {
        "model": "anthropic/claude-haiku-4.5:online",
        "messages": [system, {"role": "user", "content": "Can I return shoes?"}],
        "max_tokens": 200,
    }
    first, second = completion(fake, request), completion(fake, request)
    written = first["usage"]["prompt_tokens_details"]["cache_write_tokens"]
    assert written > 1000 and second["usage"]["prompt_tokens_details"]["cached_tokens"] == written
    notes = second["choices"][0]["message"]["annotations"]
    assert notes and {"url", "title", "start_index", "end_index"} <= set(notes[0]["url_citation"])
    found = lookups(fake, second["id"], 2)[-1]
    assert_shape("GenerationResponse", found.json())
    assert (
        found.json()["data"]["cache_discount"] > 0 > lookups(fake, first["id"], 2)[-1].json()["data"]["cache_discount"]
    )
