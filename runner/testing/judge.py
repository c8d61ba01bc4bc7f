"""The model judge of `judge:` assertions: a small pipeline of its own, one session per judge model."""

from __future__ import annotations

from typing import Any

from ..api import Pipeline
from ..outcomes import Status
from ..plan.graph import build_graph
from ..session import Session
from ..settings import RunOptions, Settings
from ..spec.load import load_spec
from .assertions import Assertion, Check

DEFAULT_JUDGE_MODEL = "google/gemini-2.5-flash"
JUDGE_PIPELINE = """
name: judge
input:
  type: object
  required: [rubric, value]
  properties:
    rubric: {type: string}
defaults:
  module: test
  model: MODEL
  temperature: 0
  reasoning: {effort: low}
  max_tokens: 800
steps:
  judge:
    system: You grade the output of an AI pipeline against a rubric. Be strict; when unsure, fail it.
    prompt: |
      Rubric: {{ input.rubric }}

      Output to grade:
      {{ input.value | tojson }}

      Does the output meet the rubric? Give a one-sentence reason.
    schema:
      type: object
      additionalProperties: false
      required: [pass, reason]
      properties:
        pass: {type: boolean}
        reason: {type: string}
output: "{{ steps.judge.output }}"
"""


class Judge:
    """Rubric assertions: a model call per check, recorded with module `test`."""

    def __init__(self, settings: Settings, transport_factory, model: str) -> None:
        self._settings = settings
        self._transport_factory = transport_factory
        self._default_model = model
        self._sessions: dict[str, Session] = {}

    async def grade(self, assertion: Assertion, value: Any) -> Check:
        model = assertion.judge_model or self._default_model
        session = self._sessions.get(model)
        if session is None:
            spec = load_spec("<judge>", text=JUDGE_PIPELINE.replace("MODEL", model))
            pipeline = Pipeline(spec, build_graph(spec))
            transport = self._transport_factory() if self._transport_factory else None
            session = pipeline.session(self._settings, transport=transport, options=RunOptions(use_cache=False))
            await session.__aenter__()
            self._sessions[model] = session
        result = await session.run({"rubric": str(assertion.expected), "value": value})
        if result.status != Status.OK:
            return Check(False, value, f"the judge call failed ({result.error.kind})")
        verdict = result.output
        return Check(bool(verdict.get("pass")), value, str(verdict.get("reason", "")))

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.__aexit__(None, None, None)
