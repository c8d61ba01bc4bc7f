"""`runner.__all__` is the documented Python API: it equals the list in README's "Python API"
section, and every name in it resolves (as httpx's tests/test_exported_members.py checks)."""

import re
from pathlib import Path

import runner
from runner.errors import PipelineError

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_names() -> list[str]:
    """The backticked names in the bullets that follow the line naming `runner.__all__`."""
    section = README.read_text(encoding="utf-8").split("### Python API", 1)[1].split("\n### ", 1)[0]
    listing = section.split("`runner.__all__`", 1)[1].split("\n\n", 2)[1]
    assert listing.startswith("- "), "the list of exported names follows the line naming runner.__all__"
    return re.findall(r"`([A-Za-z_]\w*)`", listing)


def test_all_is_the_documented_list():
    documented = documented_names()
    assert len(documented) == len(set(documented)), "README lists a name twice"
    assert sorted(runner.__all__) == sorted(documented)
    assert len(runner.__all__) == len(set(runner.__all__))


def test_every_exported_name_resolves():
    for name in runner.__all__:
        assert getattr(runner, name) is not None, name


def test_the_exceptions_a_caller_catches_are_exported():
    for name in ("PipelineError", "SpecError", "InputError", "ConfigurationError", "BudgetExceeded", "RunStopped"):
        assert issubclass(getattr(runner, name), PipelineError)
    assert {"RunOptions", "Hooks", "Status", "Outcome", "RunStatus"} <= set(runner.__all__)
