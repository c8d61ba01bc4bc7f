"""Faults a reviewer found using the CLI (issue 8): each end to end, as the user saw it."""

from __future__ import annotations

import re

from runner.fake import Fault

from .conftest import TEST_KEY, invoke, write_pipeline

SIMPLE = """\
name: simple
steps:
  answer:
    model: google/gemini-2.5-flash-lite
    prompt: "Answer {{ input.q }}"
    schema:
      type: object
      additionalProperties: false
      required: [answer]
      properties:
        answer: {type: string}
"""
RUN_ID = re.compile(r"run (run-\w+):")


def go_live(monkeypatch, server) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)


def test_retry_failed_asks_again_instead_of_replaying_the_cached_bad_replies(
    capsys, monkeypatch, tmp_path, fake_server
):
    go_live(monkeypatch, fake_server)
    pipeline = str(write_pipeline(tmp_path, SIMPLE, "simple.yaml"))
    fake_server.fake.enqueue(Fault("content", content="not json", times=2))
    failed = invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x")
    assert failed.code == 1 and "invalid_json" in failed.err
    run_id = RUN_ID.search(failed.err)[1]
    billed = fake_server.fake.billed_calls

    retried = invoke(capsys, monkeypatch, "run", pipeline, "--input", "q=x", "--resume", run_id, "--retry-failed")
    assert retried.code == 0, retried.err
    assert "1 billed, 0 from cache" in retried.err
    assert fake_server.fake.billed_calls == billed + 1
