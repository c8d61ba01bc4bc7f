"""Generation metadata: `pipeline run --fetch-generations` and `pipeline enrich RUN_ID` fill the
`generations` table from GET /generation (retrying its "not found" window, a bounded number at a
time), and `pipeline show` lists the providers OpenRouter tried for each call."""

import asyncio
import json
import sqlite3
from dataclasses import replace

import pytest

from runner.fake import Fault
from runner.settings import Settings
from runner.store import Store

from .conftest import TEST_KEY, invoke, write_pipeline

PIPELINE = """
name: enrich-demo
input: {type: object, required: [text], properties: {text: {type: string}}}
defaults: {model: google/gemini-2.5-flash-lite, max_tokens: 200}
steps:
  summary:
    prompt: "Summarise: {{ input.text }}"
  answer:
    model: anthropic/claude-haiku-4.5
    prompt: "Answer from {{ steps.summary.output }}"
output: "{{ steps.answer.output }}"
"""


@pytest.fixture
def live(monkeypatch, fake_server):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    return fake_server.fake


def generations(db_path) -> dict[str, dict]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in db.execute("SELECT * FROM generations")}


def billed_ids(db_path) -> set[str]:
    with sqlite3.connect(db_path) as db:
        return {row[0] for row in db.execute("SELECT id FROM cost_records WHERE cached = 0")}


def run_ids(db_path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [row[0] for row in db.execute("SELECT id FROM runs ORDER BY started_at")]


def write_records(tmp_path, count: int):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"ticket number {index}"}) + "\n" for index in range(count)))
    return path


def test_fetch_generations_stores_a_record_per_billed_call_after_the_not_found_window(
    capsys, monkeypatch, tmp_path, db_path, live
):
    live.generation_not_found_lookups = 2  # OpenRouter still indexing: two 404s before each record appears
    pipeline = write_pipeline(tmp_path, PIPELINE)
    result = invoke(
        capsys, monkeypatch, "run", str(pipeline), "--inputs", str(write_records(tmp_path, 3)), "--fetch-generations"
    )
    assert result.code == 0, result.err
    assert "generation records: 6 stored" in result.err
    stored = generations(db_path)
    assert set(stored) == billed_ids(db_path) and len(stored) == 6
    row = next(iter(stored.values()))
    assert json.loads(row["provider_responses"])[-1]["status"] == 200
    assert row["provider_name"] in ("Google AI Studio", "Anthropic")
    lookups = [seen for seen in live.history if seen.path == "generation"]
    assert len(lookups) == 6 * 3  # each id: not found, not found, found


def test_without_the_flag_nothing_is_looked_up(capsys, monkeypatch, tmp_path, db_path, live):
    pipeline = write_pipeline(tmp_path, PIPELINE)
    result = invoke(capsys, monkeypatch, "run", str(pipeline), "--input", "text=hello")
    assert result.code == 0, result.err
    assert generations(db_path) == {}
    assert not [seen for seen in live.history if seen.path == "generation"]
    assert "generation records" not in result.err


def test_enrich_fills_a_finished_run_with_bounded_concurrency(capsys, monkeypatch, tmp_path, db_path, live):
    pipeline = write_pipeline(tmp_path, PIPELINE)
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", str(write_records(tmp_path, 6))).code == 0
    (run_id,) = run_ids(db_path)
    live.latency_s = 0.05  # lookups overlap long enough to count them
    live.max_in_flight = 0
    result = invoke(capsys, monkeypatch, "enrich", run_id, "--concurrency", "3")
    assert result.code == 0, result.err
    assert "12 of 12 generation record(s) stored" in result.err
    assert set(generations(db_path)) == billed_ids(db_path)
    assert live.max_in_flight == 3  # bounded, and actually concurrent

    again = invoke(capsys, monkeypatch, "enrich", run_id)
    assert again.code == 0
    assert "already has its generation record" in again.err


def test_enrich_says_which_records_openrouter_never_had(capsys, monkeypatch, tmp_path, db_path, live):
    pipeline = write_pipeline(tmp_path, PIPELINE)
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--input", "text=hello").code == 0
    (run_id,) = run_ids(db_path)
    live.generations_never_found = True
    from_env = Settings.from_env  # give up on each id after 0.2 s, not OpenRouter's 10
    monkeypatch.setattr(
        Settings, "from_env", classmethod(lambda cls, *a, **k: replace(from_env(*a, **k), generation_wait_s=0.2))
    )
    result = invoke(capsys, monkeypatch, "enrich", run_id)
    assert result.code == 1
    assert "0 of 2 generation record(s) stored" in result.err
    assert f"try `pipeline enrich {run_id}` again later" in result.err
    assert generations(db_path) == {}


def test_enrich_refuses_unknown_and_mock_runs(capsys, monkeypatch, tmp_path, db_path):
    pipeline = write_pipeline(tmp_path, PIPELINE)
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--mock", "--input", "text=hello").code == 0
    (run_id,) = run_ids(db_path)
    mock = invoke(capsys, monkeypatch, "enrich", run_id)
    assert mock.code == 2 and "--mock run" in mock.err and "--fetch-generations" in mock.err
    unknown = invoke(capsys, monkeypatch, "enrich", "run-nope")
    assert unknown.code == 2 and "no run 'run-nope'" in unknown.err


def test_show_lists_the_providers_tried_for_each_call(capsys, monkeypatch, tmp_path, db_path, live):
    live.enqueue(Fault("provider_fallback", status=429, model="anthropic/claude-haiku-4.5"))
    pipeline = write_pipeline(tmp_path, PIPELINE)
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--input", "text=hello").code == 0
    (run_id,) = run_ids(db_path)
    before = invoke(capsys, monkeypatch, "show", run_id)
    assert f"providers tried: not fetched; `pipeline enrich {run_id}` stores them" in before.out

    assert invoke(capsys, monkeypatch, "enrich", run_id).code == 0
    shown = invoke(capsys, monkeypatch, "show", run_id)
    assert "Amazon Bedrock 429 -> Anthropic 200" in shown.out
    assert "Google AI Studio 200" in shown.out
    assert "not fetched" not in shown.out

    calls = json.loads(invoke(capsys, monkeypatch, "show", run_id, "--format", "json").out)["calls"]
    answer = next(call for call in calls if call["step"] == "answer")
    assert [(tried["provider_name"], tried["status"]) for tried in answer["providers"]] == [
        ("Amazon Bedrock", 429),
        ("Anthropic", 200),
    ]


def test_a_mock_run_fetches_its_generations_while_it_runs(capsys, monkeypatch, tmp_path, db_path):
    pipeline = write_pipeline(tmp_path, PIPELINE)
    result = invoke(capsys, monkeypatch, "run", str(pipeline), "--mock", "--fetch-generations", "--input", "text=hi")
    assert result.code == 0, result.err
    assert set(generations(db_path)) == billed_ids(db_path) and len(billed_ids(db_path)) == 2


def test_generation_rows_are_found_and_joined_on_both_backends(backend):
    from runner.chat.reply import Generation

    from .test_store import event

    target, schema = backend
    tried = json.dumps([{"provider_name": "Azure", "status": 503}, {"provider_name": "OpenAI", "status": 200}])
    record = Generation(
        id="gen-1", total_cost_usd=0.001, upstream_cost_usd=0.001, cache_discount=None, is_byok=False,
        provider_name="OpenAI", provider_responses=tried, latency_ms=900, generation_time_ms=850,
        native_tokens_prompt=10, native_tokens_completion=5, native_tokens_reasoning=0, native_tokens_cached=0,
        finish_reason="stop", native_finish_reason="completed",
    )  # fmt: skip
    with Store(target, schema=schema) as store:
        store.add_cost(event(id="gen-1"))
        store.add_cost(event(id="gen-2", attempt=2))
        store.add_cost(event(id="cached-x", cached=True, attempt=3))
        store.add_cost(event(id="gen-3", run_id="run-b"))
        assert store.generation_ids("run-a") == ["gen-1", "gen-2"]
        store.add_generation(record)
        store.add_generation(record)  # fetched again: replaced, not doubled
        assert store.generation_ids("run-a") == ["gen-2"]
        assert store.generation_ids("run-a", missing_only=False) == ["gen-1", "gen-2"]
        calls = {row["id"]: row for row in store.run_calls("run-a")}
        assert set(calls) == {"gen-1", "gen-2", "cached-x"}
        assert calls["gen-1"]["g_provider_name"] == "OpenAI" and calls["gen-1"]["g_provider_responses"] == tried
        assert calls["gen-2"]["g_id"] is None


def test_a_lookup_waiting_out_not_found_gives_its_slot_to_the_next(capsys, monkeypatch, tmp_path, db_path, live):
    pipeline = write_pipeline(tmp_path, PIPELINE)
    assert invoke(capsys, monkeypatch, "run", str(pipeline), "--inputs", str(write_records(tmp_path, 2))).code == 0
    (run_id,) = run_ids(db_path)
    live.history.clear()
    assert invoke(capsys, monkeypatch, "enrich", run_id, "--concurrency", "1").code == 0
    asked = [seen.query["id"] for seen in live.history if seen.path == "generation"]
    assert len(asked) == 8 and len(set(asked)) == 4  # four ids, each: not found, then found
    assert len(set(asked[:4])) == 4  # one slot, yet every id was asked before any was asked again


class StandInLookup:
    """A GenerationSource that answers when told to, and says when it was closed."""

    def __init__(self, pause, answers: dict) -> None:
        self.pause, self.answers = pause, answers
        self.release = asyncio.Event()
        self.in_flight = self.most_in_flight = 0
        self.closed = False

    async def generation(self, generation_id):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            answer = self.answers.get(generation_id)
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.in_flight -= 1

    async def aclose(self):
        self.closed = True


def generation_record(generation_id: str):
    from runner.chat.reply import Generation

    return Generation.from_body({"data": {"id": generation_id, "total_cost": 0.001}}, generation_id)


def test_the_fetcher_bounds_lookups_counts_refusals_and_can_be_abandoned():
    from runner.errors import AuthenticationError
    from runner.run.generations import GenerationFetcher

    async def scenario():
        written, lookups = [], []
        answers = {"gen-1": generation_record("gen-1"), "gen-2": AuthenticationError("401"), "gen-3": None}

        def connect(pause):
            lookups.append(StandInLookup(pause, answers))
            return lookups[0]

        fetcher = GenerationFetcher(connect, written.append, concurrency=2)
        fetcher.submit_all(["gen-1", "gen-2", "gen-3", "gen-1"])  # an id asked twice is looked up once
        await asyncio.sleep(0.01)
        assert lookups[0].most_in_flight == 2
        lookups[0].release.set()
        totals = await fetcher.drain()
        assert [found.id for found in written] == ["gen-1"]
        assert totals.fetched == 1 and sorted(totals.missing) == ["gen-2", "gen-3"] and lookups[0].closed

        lookups.clear()
        stuck = GenerationFetcher(
            lambda pause: lookups.append(StandInLookup(pause, {})) or lookups[0], written.append, concurrency=1
        )
        stuck.submit_all(["gen-8", "gen-9"])
        await asyncio.sleep(0.01)
        abandoned = await stuck.abandon()  # a run that crashed: nothing more is fetched or written
        assert abandoned.asked == 0 and len(written) == 1 and lookups[0].closed

    asyncio.run(scenario())
