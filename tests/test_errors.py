"""The exception tree: every class drawn in errors.py's docstring with the exit code it has; lower
layers raise domain errors that carry attributes and name no CLI flag; the CLI words them with its
flags and, through click, exits with their code (so CliRunner sees what the shell sees)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import runner.errors as errors
from runner.chat.client import OpenRouterClient
from runner.cli.failures import PipelineGroup
from runner.errors import (
    BudgetExceeded,
    CassetteMiss,
    MissingAPIKey,
    PipelineError,
    RunMismatch,
    RunNotFound,
    RunStopped,
    UnpricedModels,
)
from runner.run.budget import Budget
from runner.store import Store

from .conftest import invoke, write_pipeline

UNPRICED = """\
name: unpriced
input:
  type: object
  properties: {text: {type: string}}
  required: [text]
steps:
  echo:
    model: acme/not-in-any-catalogue
    prompt: "Say {{ input.text }}"
"""


def error_classes() -> list[type[PipelineError]]:
    return [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, PipelineError) and value.__module__ == errors.__name__
    ]


def test_every_error_class_is_drawn_in_the_tree_with_its_exit_code():
    tree = errors.__doc__
    for cls in error_classes():
        if cls is errors.SpecErrors:  # several SpecErrors at once: a SpecError
            continue
        assert f" {cls.__name__} " in tree, f"{cls.__name__} is missing from errors.py's tree"
    for cls in error_classes():
        if issubclass(cls, RunStopped):
            assert cls.exit_code == 3, f"{cls.__name__} is a RunStopped but exits {cls.exit_code}"


def test_a_cassette_miss_is_a_run_stop_inside_the_tree():
    assert issubclass(CassetteMiss, RunStopped) and CassetteMiss.__module__ == "runner.errors"
    miss = CassetteMiss("not in the cassette", model="m/x", cassette="a.cassette.json")
    assert (miss.exit_code, miss.model, miss.cassette) == (3, "m/x", "a.cassette.json")


def test_the_in_memory_budget_refuses_with_its_figures_and_no_flag():
    """Budget (no database: the Python API with db=None) is the one SharedBudget's tests do not run."""

    async def scenario():
        budget = Budget(max_cost_usd=0.01)
        held = await budget.reserve(0.008)
        budget.settle(held, 0.009)
        with pytest.raises(BudgetExceeded) as refused:
            await budget.reserve(0.002)
        with pytest.raises(BudgetExceeded):
            await budget.reserve(0.0001)  # refused once: every later request too
        return refused.value

    refused = asyncio.run(scenario())
    assert (refused.cap_usd, refused.spent_usd, refused.next_usd) == (0.01, 0.009, 0.002)
    assert "--" not in str(refused)


def test_resuming_an_unknown_run_is_run_not_found_with_its_id(tmp_path):
    with Store(str(tmp_path / "s.db")) as store, pytest.raises(RunNotFound) as missing:
        store.resumable_run("run-nope", "p", mock=False)
    assert missing.value.run_id == "run-nope" and missing.value.exit_code == 2
    assert "--resume" not in str(missing.value) and "pipeline runs" not in str(missing.value)


def test_a_run_of_another_pipeline_or_endpoint_is_a_mismatch_with_attributes(tmp_path):
    with Store(str(tmp_path / "s.db")) as store:
        store.start_run("run-a", "alpha", "alpha.yaml", None, mock=True)
        with pytest.raises(RunMismatch) as other_pipeline:
            store.start_run("run-a", "beta", "beta.yaml", None, mock=True)
        with pytest.raises(RunMismatch) as live:
            store.resumable_run("run-a", "alpha", mock=False)
    assert (other_pipeline.value.run_pipeline, other_pipeline.value.resuming) == ("alpha", False)
    assert (live.value.run_mock, live.value.resuming) == (True, True)
    assert "--" not in str(other_pipeline.value) + str(live.value)


def test_the_client_without_a_key_raises_missing_api_key_without_cli_advice():
    with pytest.raises(MissingAPIKey) as missing:
        OpenRouterClient(api_key=None)
    assert str(missing.value) == "OPENROUTER_API_KEY is not set" and missing.value.exit_code == 3


def test_the_cli_words_a_missing_key_with_mock(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, UNPRICED)
    result = invoke(capsys, monkeypatch, "run", str(path), "--input", "text=hi")
    assert result.code == 3
    assert result.err == (
        "error: OPENROUTER_API_KEY is not set: export it to call OpenRouter, or add --mock to run offline against "
        "the built-in fake\n"
    )


def test_a_cap_on_an_unpriced_model_is_a_configuration_stop(capsys, monkeypatch, tmp_path):
    path = write_pipeline(tmp_path, UNPRICED)
    result = invoke(capsys, monkeypatch, "run", str(path), "--input", "text=hi", "--mock", "--max-cost", "1")
    assert result.code == 3
    assert "error: --max-cost needs every model's price, and the model catalogue has none for acme/" in result.err
    assert UnpricedModels(("a/b",)).models == ("a/b",) and "--" not in str(UnpricedModels(("a/b",)))


@pytest.fixture
def group() -> click.Group:
    """A group like `pipeline`'s, with commands that raise what the real ones can."""

    @click.group(cls=PipelineGroup)
    def cli() -> None:
        pass

    @cli.command()
    def budget() -> None:
        raise BudgetExceeded(1.0, 0.75, 0.5)

    @cli.command()
    def spec() -> None:
        raise errors.SpecError("steps must be an object", path="p.yaml", line=7, column=3)

    @cli.command()
    def interrupt() -> None:
        raise KeyboardInterrupt

    return cli


def test_a_pipeline_error_exits_with_its_code_inside_click(group):
    result = CliRunner().invoke(group, ["budget"])
    assert result.exit_code == 3 and result.stdout == ""
    assert result.stderr == (
        "error: --max-cost $1.0000 reached: $0.750000 spent, the next request could cost up to $0.500000; finished "
        "records are kept, resume with a higher --max-cost\n"
    )
    spec = CliRunner().invoke(group, ["spec"])
    assert (spec.exit_code, spec.stderr) == (2, "p.yaml:7:3: steps must be an object\n")


def test_ctrl_c_outside_a_run_exits_130_with_aborted(group):
    result = CliRunner().invoke(group, ["interrupt"])
    assert (result.exit_code, result.stderr) == (130, "aborted\n")


def test_every_command_declares_the_database_options_alike():
    from runner.cli.main import cli

    def commands(command: click.Command, name: str):
        yield name, command
        for sub_name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, f"{name} {sub_name}")

    found = {}
    for name, command in commands(cli, "pipeline"):
        params = {param.name: param for param in command.params}
        if "db" in params:
            assert "db_schema" in params, f"{name} takes --db but not --db-schema"
            found[name] = (params["db"].help, params["db_schema"].help)
    assert {"pipeline run", "pipeline test", "pipeline costs", "pipeline db migrate"} <= set(found)
    assert len(set(found.values())) == 1, found
    assert "postgresql://" in next(iter(found.values()))[0]


def test_the_cache_folder_is_a_setting_read_from_the_environment(tmp_path, monkeypatch):
    from runner.chat.catalog import cache_path_for
    from runner.settings import Settings

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "from-env"))
    assert Settings.from_env().cache_dir == str(tmp_path / "from-env")
    assert Settings.from_env({}).cache_dir is None
    # The catalogue reads no environment: the folder is the one it is given.
    assert cache_path_for("https://x.test/api/v1", str(tmp_path / "given")).parent == tmp_path / "given"
    assert cache_path_for("https://x.test/api/v1").parent == Path.home() / ".cache" / "pipeline"


def test_an_assertion_kind_without_a_rule_is_a_bug_not_a_bad_file():
    """parse_assertion admits only known kinds; `check` reaching an unknown one is not the user's SpecError."""
    from runner.testing.assertions import Assertion, check

    with pytest.raises(ValueError, match="no rule for assertion kind 'judge'") as raised:
        check(Assertion("judge", "is polite", "output", None, None, None, None), {"output": "hi"})
    assert not isinstance(raised.value, PipelineError)
