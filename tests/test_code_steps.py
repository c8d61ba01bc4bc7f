"""Code steps (DESIGN §7): `call: module:function` with rendered `args`, run next to chat steps; what
`pipeline validate` finds by reading the source (and never importing it); graph, dry run and budget."""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from runner import load_pipeline
from runner.errors import SpecError
from runner.fake import FakeOpenRouter, Fault
from runner.fake.server import mock_transport
from runner.spec.code import CodeStep
from runner.spec.load import file_schema
from runner.spec.model import ForEach
from runner.spec.pymodules import argument_problems, find_module, read_signature

from .conftest import FIXTURES, TEST_KEY, cost_rows, invoke, write_pipeline

CODE = FIXTURES / "code"

TOOLS = """
import asyncio
import threading
import time


def total(items, scale=1):
    return {"total": sum(item["amount"] for item in items) * scale}


def describe(count, label, flags, nested):
    return {"count": count, "label": label, "flags": flags, "nested": nested}


def where_sync():
    return {"main_thread": threading.current_thread() is threading.main_thread()}


async def where_async():
    await asyncio.sleep(0)
    return {"main_thread": threading.current_thread() is threading.main_thread()}


def hands_back_a_coroutine():
    return where_async()


def leak(secret):
    raise ValueError("the record said " + secret)


def slow():
    time.sleep(3)
    return "late"


async def slow_async():
    await asyncio.sleep(3)
    return "late"


def own_timeout():
    raise TimeoutError("a socket of the function's own")


def a_set():
    return {1, 2}


def not_a_number():
    return float("nan")


def wrong_shape():
    return {"total": "ten"}
"""


def pipeline_with(tmp_path: Path, steps: str, *, module: str = TOOLS, inputs: str = "{type: object}") -> Path:
    (tmp_path / "tools.py").write_text(textwrap.dedent(module), encoding="utf-8")
    text = f"name: code\ninput: {inputs}\nsteps:\n{textwrap.indent(textwrap.dedent(steps).lstrip(), '  ')}"
    return write_pipeline(tmp_path, text)


def run_one(path: Path, record: dict, settings):
    """One record through the Python API; the fake answers the catalogue (code steps call no model)."""
    pipeline = load_pipeline(path)
    return asyncio.run(pipeline.run(record, settings=settings, transport=mock_transport(FakeOpenRouter())))


def test_the_files_code_step_schema_and_the_spec_fields_agree():
    properties = set(file_schema()["$defs"]["code_step"]["properties"])
    # `arg_templates` are the strings of `args`, read from it; `as`, `max_items` and `on_item_error` are
    # read into the `for_each` field; everything else is one field each way.
    assert properties - set(ForEach.KEYS) == {field.name for field in fields(CodeStep)} - {
        "id",
        "line",
        "arg_templates",
    }


def test_a_chat_step_then_a_code_step_end_to_end_through_the_cli(capsys, monkeypatch, fake_server, tmp_path, db_path):
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    inputs = tmp_path / "invoices.jsonl"
    inputs.write_text('{"text": "2 chairs, 1 desk"}\n{"text": "one lamp"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = invoke(
        capsys, monkeypatch, "run", str(CODE / "invoice.yaml"), "--inputs", str(inputs), "--output", str(out)
    )
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["ok", "ok"]
    for line in lines:
        items = line["output"]["items"]
        # The Python function saw the model's list as a list (a lone {{ }} keeps its type) and a plain string.
        assert line["output"]["total"] == {
            "total": sum(item["amount"] for item in items),
            "count": len(items),
            "currency": "EUR",
        }
    # Only the chat step called the model: one cost row per record, none for the code step.
    rows = cost_rows(db_path)
    assert [row["step"] for row in rows] == ["extract", "extract"]
    assert fake_server.fake.chat_requests == 2


def test_args_keep_their_types_and_constants_pass_through(tmp_path, settings):
    path = pipeline_with(
        tmp_path,
        """
        describe:
          call: tools:describe
          args:
            count: "{{ input.values | length }}"
            label: "{{ input.values | length }} values"
            flags: [true, "{{ input.values[0] }}", 3]
            nested: {first: "{{ input.values[0] }}", fixed: null}
        """,
    )
    result = run_one(path, {"values": [7, 8]}, settings)
    assert result.status == "ok"
    assert result.output == {
        "describe": {"count": 2, "label": "2 values", "flags": [True, 7, 3], "nested": {"first": 7, "fixed": None}}
    }


def test_async_functions_are_awaited_and_plain_ones_run_in_a_worker_thread(tmp_path, settings):
    steps = "plain:\n  call: tools:where_sync\nawaited:\n  call: tools:where_async\n"
    path = pipeline_with(tmp_path, steps + "indirect:\n  call: tools:hands_back_a_coroutine\n")
    result = run_one(path, {}, settings)
    assert result.output == {
        "plain": {"main_thread": False},
        "awaited": {"main_thread": True},
        "indirect": {"main_thread": True},  # the coroutine a plain function returned is awaited on the loop
    }


def test_an_exception_is_code_error_with_the_type_only_and_the_traceback_in_the_log(capsys, monkeypatch, tmp_path):
    path = pipeline_with(
        tmp_path,
        "fails:\n  call: tools:leak\n  args: {secret: '{{ input.secret }}'}\n",
        inputs="{type: object, properties: {secret: {type: string}}}",
    )
    result = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "secret=hunter2")
    assert result.code == 1
    line = json.loads(result.out)
    assert line["status"] == "failed"
    assert line["error"]["kind"] == "code_error" and line["error"]["step"] == "fails"
    assert line["error"]["message"] == "tools:leak raised ValueError"
    assert "hunter2" not in result.out
    # The log has what the developer needs: the traceback, down to the function's own line.
    assert "Traceback" in result.err and 'raise ValueError("the record said " + secret)' in result.err


@pytest.mark.parametrize("function", ["slow", "slow_async"])
def test_a_function_past_its_timeout_fails_the_step_clearly(function, tmp_path, settings):
    path = pipeline_with(tmp_path, f"wait:\n  call: tools:{function}\n  timeout_s: 0.2\n")
    result = run_one(path, {}, settings)
    assert result.status == "failed"
    assert result.error.kind == "code_error"
    assert result.error.message == f"tools:{function} did not return within timeout_s (0.2 s)"


def test_a_timeout_error_raised_by_the_function_is_not_the_steps_timeout(tmp_path, settings):
    path = pipeline_with(tmp_path, "wait:\n  call: tools:own_timeout\n  timeout_s: 30\n")
    result = run_one(path, {}, settings)
    assert result.error.message == "tools:own_timeout raised TimeoutError"


@pytest.mark.parametrize(
    ("function", "words"),
    [("a_set", "Object of type set is not JSON serializable"), ("not_a_number", "Out of range float values")],
)
def test_a_return_value_that_is_not_json_fails_the_step(function, words, tmp_path, settings):
    path = pipeline_with(tmp_path, f"give:\n  call: tools:{function}\n")
    result = run_one(path, {}, settings)
    assert result.status == "failed" and result.error.kind == "code_error"
    assert result.error.message.startswith(f"tools:{function} returned a value that is not JSON") and words in (
        result.error.message
    )


def test_a_return_value_that_does_not_match_the_schema_is_schema_mismatch(tmp_path, settings):
    path = pipeline_with(
        tmp_path,
        "give:\n  call: tools:wrong_shape\n  schema: {type: object, properties: {total: {type: integer}}}\n",
    )
    result = run_one(path, {}, settings)
    assert result.status == "failed" and result.error.kind == "schema_mismatch"
    assert "does not match `schema`" in result.error.message and "at /total: must be an integer" in (
        result.error.message
    )


def test_a_schema_file_beside_the_pipeline_checks_the_return_value(tmp_path, settings):
    (tmp_path / "total.json").write_text('{"type": "object", "required": ["total"]}', encoding="utf-8")
    path = pipeline_with(tmp_path, "sum:\n  call: tools:total\n  args: {items: []}\n  schema: total.json\n")
    assert run_one(path, {}, settings).output == {"sum": {"total": 0}}


@pytest.mark.parametrize(
    ("steps", "words", "line"),
    [
        ("a:\n  call: nowhere:total\n", "step 'a': no module 'nowhere' next to the pipeline file", "5:11"),
        ("a:\n  call: tools:absent\n", "has no function 'absent'", "5:11"),
        ("a:\n  call: tools:total\n  args: {items: [], scal: 2}\n", "`args.scal`: the function takes no", "6:23"),
        ("a:\n  call: tools:total\n", "argument 'items' is required and missing from `args`", "5:11"),
    ],
)
def test_a_missing_module_function_or_argument_stops_the_run_before_any_record(
    steps, words, line, capsys, monkeypatch, tmp_path
):
    path = pipeline_with(tmp_path, steps)
    result = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "{}")
    assert result.code == 2, result.err
    assert f"{path}:{line}: " in result.err and words in result.err
    assert result.out == ""


def test_a_module_that_fails_to_import_stops_the_run_naming_the_step(capsys, monkeypatch, tmp_path):
    marker = tmp_path / "imported"
    monkeypatch.setenv("PIPELINE_TEST_IMPORT_MARKER", str(marker))
    result = invoke(capsys, monkeypatch, "run", str(CODE / "crash_on_import.yaml"), "--mock", "--input", '{"n": 2}')
    assert result.code == 2
    assert result.err.strip() == (  # one line naming the module's file and line, no traceback (that is for -v)
        f"{CODE / 'crash_on_import.yaml'}:5:11: step 'double': importing module 'crashing' raised SystemExit: "
        f"crashing.py was imported ({CODE / 'crashing.py'}:8)"
    )
    assert marker.exists()  # a run does import the code: that is what it is for


def test_validate_never_imports_the_code_it_checks(capsys, monkeypatch, tmp_path):
    marker = tmp_path / "imported"
    monkeypatch.setenv("PIPELINE_TEST_IMPORT_MARKER", str(marker))
    result = invoke(capsys, monkeypatch, "validate", str(CODE / "crash_on_import.yaml"))
    assert result.code == 0, result.err
    assert "ok (1 step: double)" in result.out
    assert not marker.exists()
    assert not any(name.endswith("crashing") for name in sys.modules)


def test_validate_reads_module_function_and_argument_names_from_the_source(capsys, monkeypatch, tmp_path):
    path = pipeline_with(
        tmp_path,
        """
        unknown_arg:
          call: tools:total
          args:
            items: []
            scal: 2
        missing_function:
          call: tools:absent
        missing_module:
          call: nowhere:total
        stdlib:
          call: json:dumps
          args: {objj: 1}
        """,
    )
    result = invoke(capsys, monkeypatch, "validate", str(path))
    assert result.code == 2
    tools = tmp_path / "tools.py"
    assert (
        f"{path}:8:7: error: step 'unknown_arg': `args.scal`: the function takes no argument 'scal' "
        f"(it takes: items, scale) (tools:total is defined at {tools}:7)"
    ) in result.err
    assert f"{path}:10:11: error: step 'missing_function': `call` tools:absent: module 'tools' ({tools}) has no " in (
        result.err
    )
    assert f"{path}:12:11: error: step 'missing_module': `call` nowhere:total: no module 'nowhere' " in result.err
    # A module on sys.path is read the same way, still without importing it (json.dumps takes **kw).
    assert f"{path}:15:5: error: step 'stdlib': `args`: argument 'obj' is required and missing from `args`" in (
        result.err
    )
    assert "objj" not in result.err


def test_validate_accepts_what_it_cannot_refute(capsys, monkeypatch, tmp_path):
    module = """
    import functools
    from json import dumps as imported


    def anything(**kwargs):
        return kwargs


    @functools.lru_cache
    def decorated(a):
        return a
    """
    steps = """
    kwargs:
      call: tools:anything
      args: {whatever: 1}
    decorated:
      call: tools:decorated
      args: {b: 1}
    imported:
      call: tools:imported
      args: {anything: 1}
    """
    result = invoke(capsys, monkeypatch, "validate", str(pipeline_with(tmp_path, steps, module=module)))
    assert result.code == 0, result.err


def test_validate_names_a_syntax_error_in_the_module_by_its_file_and_line(capsys, monkeypatch, tmp_path):
    path = pipeline_with(tmp_path, "a:\n  call: tools:total\n", module="def total(:\n    pass\n")
    result = invoke(capsys, monkeypatch, "validate", str(path))
    assert result.code == 2
    assert f"{tmp_path / 'tools.py'}:1: error: step 'a': module 'tools' has a syntax error" in result.err


def test_the_module_next_to_the_pipeline_wins_over_sys_path(tmp_path, settings):
    path = pipeline_with(tmp_path, "a:\n  call: json:dumps\n  args: {obj: 1}\n", module="")
    (tmp_path / "json.py").write_text("def dumps(obj):\n    return 'local'\n", encoding="utf-8")
    assert run_one(path, {}, settings).output == {"a": "local"}


def test_two_pipelines_modules_of_the_same_name_never_meet(tmp_path, settings):
    outputs = []
    for scale in (2, 3):
        folder = tmp_path / f"p{scale}"
        folder.mkdir()
        module = f"def total(items):\n    return {scale}\n"
        outputs.append(
            run_one(
                pipeline_with(folder, "a:\n  call: tools:total\n  args: {items: []}\n", module=module), {}, settings
            ).output
        )
    assert outputs == [{"a": 2}, {"a": 3}]


def test_a_package_module_next_to_the_pipeline_with_its_own_imports(tmp_path, settings):
    package = tmp_path / "helpers"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "maths.py").write_text("from .units import EUR\n\ndef price(n):\n    return f'{n} {EUR}'\n")
    (package / "units.py").write_text("EUR = 'euro'\n", encoding="utf-8")
    path = pipeline_with(tmp_path, "a:\n  call: helpers.maths:price\n  args: {n: 3}\n", module="")
    assert run_one(path, {}, settings).output == {"a": "3 euro"}


def test_find_module_walks_packages_on_sys_path_without_importing_them(tmp_path, monkeypatch):
    package = tmp_path / "site" / "crashpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise SystemExit('imported')\n", encoding="utf-8")
    (package / "inner.py").write_text("async def work(a: int, *, b: str = 'x') -> dict:\n    '''Do it.'''\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    found = find_module("crashpkg.inner", tmp_path / "elsewhere")
    assert found is not None and found.path == package / "inner.py" and found.where == "on sys.path"
    assert "crashpkg" not in sys.modules
    signature = read_signature(found, "work")
    assert signature.is_async and signature.returns == "dict" and signature.docstring == "Do it."
    assert [(p.name, p.kind, p.annotation, p.default) for p in signature.parameters] == [
        ("a", "POSITIONAL_OR_KEYWORD", "int", None),
        ("b", "KEYWORD_ONLY", "str", "'x'"),
    ]
    assert argument_problems(signature.parameters, ["a", "b"]) == ()
    assert argument_problems(signature.parameters, ["b"]) == (
        (None, "argument 'a' is required and missing from `args`"),
    )


def test_the_dry_run_and_the_budget_treat_code_steps_as_free(capsys, monkeypatch):
    dry = invoke(capsys, monkeypatch, "run", str(CODE / "invoice.yaml"), "--dry-run", "--input", "text=1 desk")
    assert dry.code == 0, dry.err
    steps = [line.split()[0] for line in dry.out.splitlines()[2:] if line.strip() and not line[0].isdigit()]
    assert steps == ["extract"] and "1 possible call(s)" in dry.out
    capped = invoke(
        capsys, monkeypatch, "run", str(CODE / "invoice.yaml"), "--mock", "--max-cost", "0.01", "--input", "text=1 desk"
    )
    assert capped.code == 0, capped.err
    assert json.loads(capped.out)["total"]["currency"] == "EUR"


def test_graph_draws_code_steps_in_their_own_shape(capsys, monkeypatch):
    mermaid = invoke(capsys, monkeypatch, "graph", str(CODE / "invoice.yaml"))
    assert 'total[["total<br/><small>code · invoice_tools:sum_amounts</small>"]]' in mermaid.out
    assert 'extract["extract<br/>' in mermaid.out
    dot = invoke(capsys, monkeypatch, "graph", str(CODE / "invoice.yaml"), "--format", "dot")
    assert 'total [label="total\\ncode · invoice_tools:sum_amounts", shape=component];' in dot.out


def test_loading_does_not_import_the_code(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    monkeypatch.setenv("PIPELINE_TEST_IMPORT_MARKER", str(marker))
    pipeline = load_pipeline(CODE / "crash_on_import.yaml")
    assert pipeline.graph.order == ("double",) and not marker.exists()


def test_a_code_step_sees_only_its_ancestors_and_a_skipped_one_is_null(tmp_path, settings):
    path = pipeline_with(
        tmp_path,
        """
        first:
          call: tools:total
          args: {items: "{{ input['items'] }}"}
          when: "{{ input['items'] | length > 5 }}"
        second:
          call: tools:total
          args: {items: "{{ input['items'] }}", scale: 10}
        """,
    )
    result = run_one(path, {"items": [{"amount": 1}]}, settings)
    assert result.output == {"first": None, "second": {"total": 10}}
    with pytest.raises(SpecError, match="step 'b'"):
        load_pipeline(pipeline_with(tmp_path, "b:\n  call: tools:total\n  args: {items: '{{ steps.zz.output }}'}\n"))


def test_a_pipeline_with_code_steps_pickles_and_runs_where_it_lands(tmp_path, settings):
    path = pipeline_with(tmp_path, "a:\n  call: tools:total\n  args: {items: '{{ input.items_ }}'}\n")
    pipeline = pickle.loads(pickle.dumps(load_pipeline(path)))
    result = asyncio.run(
        pipeline.run({"items_": [{"amount": 4}]}, settings=settings, transport=mock_transport(FakeOpenRouter()))
    )
    assert result.output == {"a": {"total": 4}}


def test_validate_warns_that_an_unused_code_step_runs_for_nothing(capsys, monkeypatch, tmp_path):
    path = pipeline_with(tmp_path, "a:\n  call: tools:where_sync\nb:\n  call: tools:where_sync\n")
    path.write_text(path.read_text() + "output: '{{ steps.a.output }}'\n")
    result = invoke(capsys, monkeypatch, "validate", str(path))
    assert result.code == 0
    assert "step 'b': its output reaches nothing (no step and no `output` refers to it); it runs for nothing" in (
        result.err
    )


def test_references_into_a_code_steps_output_are_checked_only_as_far_as_its_schema_says(tmp_path):
    steps = """
    free:
      call: tools:total
      args: {items: []}
    open:
      call: tools:total
      args: {items: []}
      schema: {type: object, properties: {total: {type: integer}}}
    closed:
      call: tools:total
      args: {items: []}
      schema: {type: object, additionalProperties: false, properties: {total: {type: integer}}}
    use:
      call: tools:describe
      args:
        count: "{{ steps.free.output.total }}"
        label: "{{ steps.open.output.anything }}"
        flags: "{{ steps.closed.output.total }}"
        nested: "{{ steps.closed.output.totl }}"
    """
    with pytest.raises(SpecError) as caught:
        load_pipeline(pipeline_with(tmp_path, steps))
    # No schema: any JSON (not text, as for a chat step); an open schema may hold other names; a closed one not.
    assert "`steps.closed.output.totl`: the output schema of step 'closed' has no property 'totl'" in str(caught.value)
    assert "free" not in str(caught.value) and "anything" not in str(caught.value)


def test_the_dry_run_prices_a_prompt_that_reads_a_schemaless_code_steps_output(capsys, monkeypatch, tmp_path):
    path = pipeline_with(
        tmp_path,
        """
        sum:
          call: tools:total
          args: {items: "{{ input['items'] }}"}
        say:
          model: google/gemini-2.5-flash-lite
          prompt: "The total is {{ steps.sum.output.total }} ({{ steps.sum.output['by'][0].name }})"
        """,
    )
    dry = invoke(capsys, monkeypatch, "run", str(path), "--dry-run", "--input", '{"items": []}')
    assert dry.code == 0, dry.err
    assert "1 possible call(s)" in dry.out and "could not be rendered" not in dry.out + dry.err


def test_timeout_s_comes_from_defaults_when_the_step_does_not_set_it(tmp_path, settings):
    path = pipeline_with(tmp_path, "wait:\n  call: tools:slow_async\n")
    path.write_text(path.read_text().replace("steps:\n", "defaults: {timeout_s: 0.1}\nsteps:\n"))
    assert load_pipeline(path).spec.step("wait").timeout_s == 0.1
    result = run_one(path, {}, settings)
    assert result.error.message == "tools:slow_async did not return within timeout_s (0.1 s)"


def test_a_pipeline_of_code_steps_alone_runs_without_an_api_key_and_asks_nothing(
    capsys, monkeypatch, fake_server, tmp_path
):
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)  # no OPENROUTER_API_KEY (conftest)
    path = pipeline_with(tmp_path, "a:\n  call: tools:total\n  args: {items: '{{ input.items }}'}\n")
    data = tmp_path / "items.jsonl"
    data.write_text('{"items": [{"amount": 2}, {"amount": 3}]}\n{"items": []}\n', encoding="utf-8")
    one = invoke(capsys, monkeypatch, "run", str(path), "--input", '{"items": [{"amount": 4}]}')
    assert one.code == 0, one.err
    assert json.loads(one.out) == {"a": {"total": 4}}
    many = invoke(capsys, monkeypatch, "run", str(path), "--inputs", str(data))
    assert many.code == 0, many.err
    assert [json.loads(line)["status"] for line in many.out.splitlines()] == ["ok", "ok"]
    assert list(fake_server.fake.history) == []  # not even the model catalogue: nothing calls a model


def test_a_failed_code_step_is_told_without_billed_attempts_or_models(capsys, monkeypatch, tmp_path):
    path = pipeline_with(tmp_path, "a:\n  call: tools:own_timeout\n")
    result = invoke(capsys, monkeypatch, "run", str(path), "--mock", "--input", "{}")
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == (
        "error: step 'a' failed (code_error): tools:own_timeout raised TimeoutError. Details are in the log above."
    )


def test_retry_failed_after_a_code_step_failed_asks_its_chat_steps_again(capsys, monkeypatch, tmp_path, fake_server):
    # The function rejected a reply that passed its check: serving the same reply from the cache would fail the
    # record the same way, so every request of the record is asked afresh.
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    (tmp_path / "gate.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            def once(text):
                marker = Path(__file__).with_name("failed-once")
                if not marker.exists():
                    marker.write_text("")
                    raise ValueError("not this time")
                return {"length": len(text)}
            """
        ),
        encoding="utf-8",
    )
    path = str(
        write_pipeline(
            tmp_path,
            """
name: checked-draft
defaults: {model: google/gemini-2.5-flash-lite, retries: 0}
steps:
  draft: {prompt: "Draft a reply to {{ input.q }}"}
  check: {call: "gate:once", args: {text: "{{ steps.draft.output }}"}}
output: "{{ steps.check.output }}"
""",
        )
    )
    failed = invoke(capsys, monkeypatch, "run", path, "--input", "q=x")
    assert failed.code == 1 and "code_error" in failed.out, failed.out
    run_id = failed.err.split("run ", 1)[1].split(":", 1)[0]
    retried = invoke(capsys, monkeypatch, "run", path, "--input", "q=x", "--resume", run_id, "--retry-failed")
    assert retried.code == 0, retried.err
    assert "calls: 1 billed, 0 from cache" in retried.err


def test_retry_failed_asks_everything_again_when_a_code_step_failed_beside_a_chat_step(
    capsys, monkeypatch, tmp_path, fake_server
):
    # `a` times out while the other branch runs, and the code step `c` rejects `b`'s good reply. The record's
    # error names `a` alone (the first failure); the code step's failure still decides: `b` is asked again.
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_server.base_url)
    (tmp_path / "gate.py").write_text("def reject(text):\n    raise ValueError('no good')\n", encoding="utf-8")
    path = str(
        write_pipeline(
            tmp_path,
            """
name: two-branches
defaults: {retries: 0}
steps:
  a: {model: openai/gpt-4o-mini, prompt: "A {{ input.q }}", timeout_s: 0.3}
  b: {model: google/gemini-2.5-flash-lite, prompt: "B {{ input.q }}"}
  c: {call: "gate:reject", args: {text: "{{ steps.b.output }}"}}
output: "{{ steps.c.output }}"
""",
        )
    )
    fake_server.fake.enqueue(Fault("hang", delay_s=2.0, model="openai/gpt-4o-mini"))
    failed = invoke(capsys, monkeypatch, "run", path, "--input", "q=x")
    assert failed.code == 1 and json.loads(failed.out)["error"]["step"] == "a", failed.out
    run_id = failed.err.split("run ", 1)[1].split(":", 1)[0]
    retried = invoke(capsys, monkeypatch, "run", path, "--input", "q=x", "--resume", run_id, "--retry-failed")
    assert "calls: 2 billed, 0 from cache" in retried.err, retried.err


@pytest.mark.parametrize(
    ("failures", "afresh"),
    [
        ([("ask", "invalid_json")], "FAILED_REPLIES"),
        ([("ask", "unavailable"), ("ask", "schema_mismatch")], "FAILED_REPLIES"),
        ([("ask", "too_many_items")], "EVERYTHING"),  # the list came from an earlier reply
        ([("ask", "render_error")], "EVERYTHING"),
        ([("ask", "rejected")], "EVERYTHING"),  # a 400 may be what an earlier step wrote
        ([("ask", "content_filter")], "EVERYTHING"),
        ([("ask", "unavailable"), ("check", "code_error")], "EVERYTHING"),
        ([("look", "tool_rounds_exhausted")], "EVERYTHING"),
        ([("look", "invalid_json")], "EVERYTHING"),  # a tool step's rounds passed their check
        ([("gone", "invalid_json")], "EVERYTHING"),  # a step the pipeline no longer has
        ([], "EVERYTHING"),
    ],
)
def test_what_retry_failed_asks_again_follows_the_steps_that_failed_and_why(tmp_path, failures, afresh):
    from runner.run.afresh import Afresh, afresh_for

    (tmp_path / "kit.py").write_text("def check(x):\n    return x\n\ndef find(q: str) -> str:\n    return q\n")
    spec = load_pipeline(
        write_pipeline(
            tmp_path,
            """
name: kinds
defaults: {model: google/gemini-2.5-flash-lite}
steps:
  ask: {prompt: "Q {{ input.q }}"}
  check: {call: "kit:check", args: {x: "{{ steps.ask.output }}"}}
  look: {prompt: "Look {{ input.q }}", tools: ["kit:find"]}
""",
        )
    ).spec
    *earlier, first = failures or [(None, None)]
    stored = {"error_json": json.dumps({"step": first[0], "kind": first[1]})}
    assert afresh_for(spec, stored, earlier) is Afresh[afresh]
