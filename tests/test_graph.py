from __future__ import annotations

import pytest

from runner.api import load_pipeline
from runner.errors import SpecError

from .conftest import EXAMPLES, write_pipeline

HEAD = "name: g\ndefaults: {model: google/gemini-2.5-flash}\nsteps:\n"


def test_edges_come_from_templates_and_needs():
    pipeline = load_pipeline(EXAMPLES / "invoice_check.yaml")
    assert pipeline.graph.parents == {"extract": (), "audit": ("extract",), "notify": ("extract", "audit")}
    assert pipeline.graph.order == ("extract", "audit", "notify")


def test_independent_steps_have_no_edge_between_them():
    graph = load_pipeline(EXAMPLES / "ticket_triage.yaml").graph
    assert graph.parents["classify"] == () and graph.parents["extract"] == ()
    assert set(graph.parents["reply"]) == {"classify", "extract"}
    assert graph.output_steps == {"classify", "extract", "reply"}


def test_references_in_system_and_when_make_edges(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD
        + "  a:\n    prompt: hi\n  b:\n    prompt: hi\n  c:\n    prompt: hi\n"
        + "  d:\n    system: 'Context {{ steps.a.output }}'\n    when: '{{ steps.b.output }}'\n"
        + "    prompt: \"{{ steps['c'].output }}\"\n",
    )
    assert set(load_pipeline(path).graph.parents["d"]) == {"a", "b", "c"}


def test_ancestors_are_transitive(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD
        + "  a:\n    prompt: hi\n  b:\n    prompt: '{{ steps.a.output }}'\n  c:\n    prompt: '{{ steps.b.output }}'\n",
    )
    assert load_pipeline(path).graph.ancestors["c"] == {"a", "b"}


def test_long_cycle_is_printed_in_full(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD
        + "  a:\n    prompt: '{{ steps.c.output }}'\n  b:\n    prompt: '{{ steps.a.output }}'\n"
        + "  c:\n    needs: [b]\n    prompt: hi\n",
    )
    with pytest.raises(SpecError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        load_pipeline(path)


def test_nested_property_reference_is_checked_against_the_schema(tmp_path):
    schema = (
        "    schema:\n      type: object\n      additionalProperties: false\n      required: [address]\n"
        "      properties:\n        address:\n          type: object\n          additionalProperties: false\n"
        "          required: [city]\n          properties:\n            city: {type: string}\n"
    )
    good = write_pipeline(
        tmp_path, HEAD + "  a:\n    prompt: hi\n" + schema + "output: '{{ steps.a.output.address.city }}'\n"
    )
    assert load_pipeline(good).graph.output_steps == {"a"}
    bad = write_pipeline(
        tmp_path, HEAD + "  a:\n    prompt: hi\n" + schema + "output: '{{ steps.a.output.address.town }}'\n", "bad.yaml"
    )
    with pytest.raises(SpecError, match="has no property 'town'; it defines: city"):
        load_pipeline(bad)


def test_method_calls_and_filters_on_outputs_are_not_property_errors(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD
        + "  a:\n    prompt: hi\n    schema:\n      type: object\n      additionalProperties: false\n"
        + "      required: [tags]\n      properties:\n        tags: {type: array, items: {type: string}}\n"
        + "  b:\n    prompt: \"{{ steps.a.output.tags | join(',') }} {{ steps.a.output.items() | list }}\"\n",
    )
    assert load_pipeline(path).graph.parents["b"] == ("a",)


def test_text_step_output_takes_string_methods_and_filters_but_no_properties(tmp_path):
    path = write_pipeline(
        tmp_path,
        HEAD + "  a:\n    prompt: hi\n  b:\n    prompt: '{{ steps.a.output.upper() }} {{ steps.a.output | length }}'\n",
    )
    assert load_pipeline(path).graph.parents["b"] == ("a",)
    bad = write_pipeline(tmp_path, HEAD + "  a:\n    prompt: hi\n  b:\n    prompt: '{{ steps.a.output.anything }}'\n")
    with pytest.raises(SpecError, match="step 'a' has no `schema`, so its output is text with no property 'anything'"):
        load_pipeline(bad)
