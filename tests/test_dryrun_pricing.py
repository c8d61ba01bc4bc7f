"""--dry-run prices what the run would pay: half price for requests the Batch API would carry
(`--batch-api`), and the cache-read and cache-write prices for a prompt-cache prefix."""

from __future__ import annotations

import json

import pytest

from runner import load_pipeline
from runner.chat.catalog import bundled_catalog
from runner.run.dryrun import estimate
from runner.run.inputs import InputItem

from .conftest import invoke, write_pipeline
from .test_prompt_cache import POLICY

PIPELINE = """\
name: priced
defaults: {model: openai/gpt-4o-mini, max_tokens: 200}
steps:
  batched:
    prompt: "Summarise: {{ input.q }}"
  direct:
    batch: false
    prompt: "Translate: {{ input.q }}"
"""
MODEL = "anthropic/claude-sonnet-4.5"
CACHED = (
    f"name: cached\ndefaults: {{model: {MODEL}, max_tokens: 100}}\nsteps:\n  answer:\n    prompt_cache: SETTING\n"
    f"    system: {json.dumps(POLICY)}\n    prompt: 'Customer asks: {{{{ input.q }}}}'\n"
)
ITEMS = [InputItem(index, {"q": f"question {index}"}) for index in range(3)]


def _rows(path, **options):
    pipeline = load_pipeline(path)
    result = estimate(pipeline.spec, pipeline.renderer, bundled_catalog(), ITEMS, pipeline.check_input, **options)
    return result, {row.step: row for row in result.rows}


def test_batch_api_halves_the_batchable_steps_estimate(tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    _, normal = _rows(path)
    result, batch = _rows(path, batch_api=True)
    assert normal["batched"].low_usd > 0
    assert batch["batched"].low_usd == pytest.approx(normal["batched"].low_usd / 2)
    assert batch["batched"].high_usd == pytest.approx(normal["batched"].high_usd / 2)
    assert (batch["direct"].low_usd, batch["direct"].high_usd) == (normal["direct"].low_usd, normal["direct"].high_usd)
    assert (batch["batched"].batched_calls, batch["direct"].batched_calls) == (3, 0) and result.batch_api


def test_prompt_caching_reads_after_the_first_request_low_and_writes_every_time_high(tmp_path):
    info = bundled_catalog().models[MODEL]
    _, off = _rows(write_pipeline(tmp_path, CACHED.replace("SETTING", "off"), "off.yaml"))
    _, auto = _rows(write_pipeline(tmp_path, CACHED.replace("SETTING", "auto"), "auto.yaml"))
    plain, cached = off["answer"], auto["answer"]
    prefix = cached.cache_prefix_tokens
    assert 1000 < prefix < cached.prompt_tokens / 3 and plain.cache_prefix_tokens == 0
    write = prefix * (info.cache_write_price - info.prompt_price)
    read = prefix * (info.cache_read_price - info.prompt_price)
    assert cached.low_usd == pytest.approx(plain.low_usd + write + 2 * read)
    assert cached.high_usd == pytest.approx(plain.high_usd + 3 * write)
    assert cached.low_usd < plain.low_usd < plain.high_usd < cached.high_usd


def test_the_dry_run_prices_batch_api_and_says_so(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    args = ("run", str(path), "--dry-run", "--input", "q=hello")
    normal = invoke(capsys, monkeypatch, *args)
    batch = invoke(capsys, monkeypatch, *args, "--batch-api")
    assert normal.code == batch.code == 0, batch.err
    assert "--batch-api" not in normal.err
    assert "--batch-api: 1 of 2 call(s) priced at half the normal price, as the Batch API typically bills" in batch.err
    assert normal.out != batch.out


def test_the_dry_run_names_the_cache_prices_it_assumed(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, CACHED.replace("SETTING", "auto"))
    ran = invoke(capsys, monkeypatch, "run", str(path), "--dry-run", "--input", "q=hello")
    assert ran.code == 0, ran.err
    assert "prompt caching: step 'answer' marks about" in ran.err and f"for {MODEL}'s cache" in ran.err
    assert "reads them after that (cache-read price), the high one writes them on every call" in ran.err
