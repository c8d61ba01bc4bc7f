from __future__ import annotations

import copy
import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from runner.cli.main import cli
from runner.fake import FakeOpenRouter
from runner.fake.server import FakeServer, mock_transport
from runner.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "pipelines"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE_PIPELINES = sorted(path for path in EXAMPLES.glob("*.yaml") if not path.name.endswith(".cases.yaml"))
TEST_KEY = "sk-or-v1-test-secret-0123456789abcdef"


def openrouter_request_validator() -> Draft202012Validator:
    """OpenRouter's published ChatRequest schema, made stricter than the server.

    The live API ignores unknown top-level keys (a typo silently does nothing), so unknown keys
    are errors here; `reasoning.max_tokens`, `reasoning.exclude` and `transforms` are documented
    but missing from the schema, so they are added.
    """
    document = json.loads((Path(__file__).parent / "data" / "openrouter_chat_request.schema.json").read_text())
    strict = copy.deepcopy(document)
    request = strict["$defs"]["ChatRequest"]
    request["additionalProperties"] = False
    reasoning = request["properties"]["reasoning"]
    reasoning["properties"]["max_tokens"] = {"type": "integer", "minimum": 0}
    reasoning["properties"]["exclude"] = {"type": "boolean"}
    reasoning["additionalProperties"] = False
    # `transforms` (["middle-out"]) is in the API reference (NOTES.md) but missing from the schema.
    request["properties"]["transforms"] = {"type": "array", "items": {"enum": ["middle-out"]}}
    return Draft202012Validator(strict)


class BodyAudit:
    """Every chat body any fake receives in the suite is checked against OpenRouter's schema."""

    def __init__(self) -> None:
        self.validator = openrouter_request_validator()
        self.checked = 0
        self.violations: list[str] = []

    def check(self, body: dict) -> None:
        self.checked += 1
        for error in self.validator.iter_errors(body):
            location = "/".join(str(part) for part in error.absolute_path) or "(body)"
            self.violations.append(f"{location}: {error.message}")


@pytest.fixture(scope="session")
def body_audit() -> BodyAudit:
    return BodyAudit()


@pytest.fixture(autouse=True)
def _audit_every_request(monkeypatch, body_audit):
    original = FakeOpenRouter.__init__

    def audited_init(self, *args, **kwargs):
        kwargs.setdefault("on_chat_body", body_audit.check)
        original(self, *args, **kwargs)

    monkeypatch.setattr(FakeOpenRouter, "__init__", audited_init)
    before = len(body_audit.violations)
    yield
    new = body_audit.violations[before:]
    assert not new, "request bodies that break OpenRouter's ChatRequest schema:\n" + "\n".join(new)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the developer's key, database or model cache."""
    for name in (
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
        "OPENROUTER_BATCH_URL",
        "PIPELINE_APP_URL",
        "PIPELINE_APP_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPELINE_DB", str(tmp_path / "ledger.db"))
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def fake() -> FakeOpenRouter:
    return FakeOpenRouter()


@pytest.fixture
def transport(fake):
    return mock_transport(fake)


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def settings(db_path) -> Settings:
    return Settings(api_key=TEST_KEY, base_url="https://openrouter.test/api/v1", db=str(db_path), models_cache=False)


@pytest.fixture
def fake_server():
    with FakeServer(FakeOpenRouter()) as server:
        yield server


def cost_rows(db_path: Path) -> list[dict]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM cost_records ORDER BY created_at, attempt")]


def write_pipeline(folder: Path, text: str, name: str = "p.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


class Outcome:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def invoke(capsys, monkeypatch, *args: str, stdin: str | None = None) -> Outcome:
    """Run the `pipeline` command with click's CliRunner; returns its exit code, stdout and stderr.

    An exception that is not a PipelineError (which the command turns into an exit code) fails the test.
    (`capsys` and `monkeypatch` stay in the signature for the many call sites.)
    """
    result = CliRunner().invoke(cli, list(args), prog_name="pipeline", input=stdin, catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


POSTGRES_URL = os.environ.get("PIPELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_HELP = (
    f"PostgreSQL is not reachable at {POSTGRES_URL}: start it (pg_ctlcluster <version> main start) or point "
    "PIPELINE_TEST_POSTGRES_URL at a server to run the PostgreSQL tests"
)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL tests' server; skipped with a reason when absent, a failure when CI requires it."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except Exception as exc:
        if os.environ.get("PIPELINE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{POSTGRES_HELP} ({exc})")
        pytest.skip(POSTGRES_HELP)
    return POSTGRES_URL


@pytest.fixture
def postgres_schema(postgres_url):
    """A fresh schema for one test, dropped afterwards, so runs never see each other's tables."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """(target, schema) of a fresh database on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db"), None
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_schema")
