"""Status and outcome words are StrEnums (runner/outcomes.py): equal to the stored words, stored as
those words on both backends, and the first migration's CHECK lists the outcomes it always did."""

from __future__ import annotations

import re

from runner.outcomes import FailureKind, Outcome, RunStatus, Status
from runner.store import Store
from runner.store.db import open_database
from runner.store.migrations import m001_initial

from .test_store import event


def test_members_equal_the_words_the_database_and_outputs_hold():
    assert [str(word) for word in Status] == ["ok", "failed", "skipped"]
    assert [str(word) for word in RunStatus] == ["running", "ok", "failed", "stopped", "interrupted"]
    assert Outcome.SCHEMA_MISMATCH == "schema_mismatch" and f"{Outcome.INVALID_JSON}" == "invalid_json"


def test_the_first_migration_checks_the_six_outcomes_it_was_written_with(tmp_path):
    """Built from Outcome, m001 must keep its effect: a new member needs a migration of its own."""
    db = open_database(str(tmp_path / "m.db"))
    m001_initial(db)
    sql = db.query("SELECT sql FROM sqlite_master WHERE name = 'cost_records'")[0]["sql"]
    listed = re.search(r"outcome IN\s*\(([^)]*)\)", sql)[1]
    assert re.findall(r"'(\w+)'", listed) == [
        "ok", "invalid_json", "schema_mismatch", "content_filter", "length", "error"
    ]  # fmt: skip
    db.close()


def test_enum_values_are_stored_as_their_words(backend):
    with Store(backend[0], schema=backend[1]) as store:
        store.add_cost(event(outcome=Outcome.SCHEMA_MISMATCH))
        store.start_run("run-a", "p", "p.yaml", None)
        store.finish_run("run-a", RunStatus.INTERRUPTED, only_if=RunStatus.RUNNING)
        store.flush()
        assert [row["outcome"] for row in store.cost_summary(("outcome",))] == ["schema_mismatch"]
        assert store.run_row("run-a")["status"] == "interrupted"


def test_failure_kinds_cover_the_error_classes_and_the_failing_outcomes():
    import inspect
    import json

    import runner.errors as errors

    kinds = {
        cls.kind
        for cls in vars(errors).values()
        if inspect.isclass(cls) and issubclass(cls, errors.PipelineError) and hasattr(cls, "kind")
    }
    assert kinds and all(isinstance(kind, FailureKind) for kind in kinds)
    # A step whose re-asks are spent fails with its last reply's outcome as its kind.
    assert {str(outcome) for outcome in Outcome if outcome != Outcome.OK} <= {str(kind) for kind in FailureKind}
    summary = errors.FailureSummary(kind=errors.RenderError.kind, step="s")
    assert json.loads(json.dumps(summary.as_dict()))["kind"] == "render_error"
