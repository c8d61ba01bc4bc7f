"""Values travel: a loaded pipeline, its spec and graph, and a record's result pickle and come back equal,
so a process pool or another machine can run records of a pipeline loaded here."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from runner import load_pipeline
from runner.fake.server import mock_transport
from runner.spec.model import FrozenDict, freeze

from .conftest import EXAMPLES


@pytest.mark.parametrize("name", ["ticket_triage", "invoice_check", "product_copy"])
def test_a_loaded_pipeline_pickles_with_its_spec_and_graph(name):
    pipeline = load_pipeline(EXAMPLES / f"{name}.yaml")
    travelled = pickle.loads(pickle.dumps(pipeline))
    assert travelled.spec == pipeline.spec and travelled.graph == pipeline.graph
    assert pickle.loads(pickle.dumps(pipeline.spec.steps[0])) == pipeline.spec.steps[0]


def test_a_pipeline_that_travelled_runs_a_record_the_same(fake, settings):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    travelled = pickle.loads(pickle.dumps(pipeline))
    record = {"ticket": "The app crashes when I upload a photo"}
    here = asyncio.run(pipeline.run(record, settings=settings, transport=mock_transport(fake)))
    there = asyncio.run(travelled.run(record, settings=settings, transport=mock_transport(fake)))
    assert there.status == here.status == "ok" and there.output == here.output


def test_a_record_result_pickles(fake, settings):
    pipeline = load_pipeline(EXAMPLES / "ticket_triage.yaml")
    result = asyncio.run(pipeline.run({"ticket": "Refund please"}, settings=settings, transport=mock_transport(fake)))
    travelled = pickle.loads(pickle.dumps(result))
    assert travelled == result and travelled.steps["classify"] == result.steps["classify"]


def test_frozen_mappings_refuse_changes_and_survive_a_round_trip():
    frozen = freeze({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    assert isinstance(frozen["properties"], FrozenDict) and frozen["required"] == ("a",)
    with pytest.raises(TypeError):
        frozen["type"] = "array"
    with pytest.raises(TypeError):
        frozen.update(type="array")
    assert pickle.loads(pickle.dumps(frozen)) == frozen and hash(pickle.loads(pickle.dumps(frozen))) == hash(frozen)
