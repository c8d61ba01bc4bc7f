"""The wheel as a user gets it: built, installed in a fresh virtual environment outside the
checkout, and run from another folder, where nothing of the checkout can stand in for it.

Marked `wheel` (deselect with `-m "not wheel"`). By default it builds offline and lends the
test environment's installed dependencies to the new environment (about 10 s);
`PIPELINE_WHEEL_DEPS=index` (set by `.ci/run`) builds with build isolation and installs the
wheel's declared dependencies from the package index, as `pip install` would for a user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import EXAMPLES, ROOT

FROM_INDEX = os.environ.get("PIPELINE_WHEEL_DEPS") == "index"
EXAMPLE_FILES = sorted(path for path in EXAMPLES.glob("*.yaml") if not path.name.endswith(".cases.yaml"))
MODELINE = re.compile(r"#\s*yaml-language-server:\s*\$schema=(\S+)")


def _run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, env=environment, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} exited {result.returncode}:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a clean copy of its sources: no build/ folder in the checkout, no stale build files."""
    scratch = tmp_path_factory.mktemp("build")
    source = scratch / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "runner", source / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    offline = [] if FROM_INDEX else ["--no-build-isolation", "--no-index"]
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *offline, "--wheel-dir", scratch, source])
    (built,) = scratch.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    if FROM_INDEX:
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel])
    else:
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel])
        # Dependencies only: a path in a .pth file is appended to sys.path, but the editable
        # install's own .pth hooks in that folder are not run, so the checkout stays out of reach.
        own_site = Path(_run([python, "-c", "import site; print(site.getsitepackages()[0])"]).stdout.strip())
        (own_site / "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    found = _run([python, "-c", "import runner; print(runner.__file__)"], cwd=venv).stdout.strip()
    assert Path(found).is_relative_to(venv), f"runner was imported from {found}, not from the installed wheel"
    return venv / "bin"


@pytest.fixture
def workdir(tmp_path) -> Path:
    """Another folder holding a copy of the examples, so their relative schema and prompt paths are used."""
    shutil.copytree(EXAMPLES, tmp_path / "pipelines")
    return tmp_path


def _first_case_input(example: Path) -> dict:
    cases = example.with_name(example.stem + ".cases.yaml")
    assert cases.exists(), f"{example.name} has no {cases.name}: its first case's input is what CI runs it with"
    return yaml.safe_load(cases.read_text(encoding="utf-8"))["cases"][0]["input"]


def test_every_example_names_the_packaged_schema_for_editors():
    for pipeline in [*EXAMPLE_FILES, *sorted((ROOT / "bench" / "pipelines").glob("*.yaml"))]:
        modeline = MODELINE.search(pipeline.read_text(encoding="utf-8").splitlines()[0])
        assert modeline, f"{pipeline}: the first line should point the YAML language server at the schema"
        target = (pipeline.parent / modeline.group(1)).resolve()
        assert target == ROOT / "runner" / "data" / "pipeline.schema.json", f"{pipeline}: {modeline.group(1)}"


@pytest.mark.wheel
def test_the_wheel_carries_every_data_file_it_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"runner/data/pipeline.schema.json", "runner/data/models.json"} <= names
    assert not any(name.startswith(("schemas/", "tests/", "pipelines/")) for name in names)


@pytest.mark.wheel
def test_the_installed_wheel_validates_every_example_from_another_folder(installed, workdir):
    result = _run([installed / "pipeline", "validate", EXAMPLES], cwd=workdir)
    for example in EXAMPLE_FILES:
        assert f"{EXAMPLES / example.name}: ok" in result.stdout


@pytest.mark.wheel
@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda path: path.stem)
def test_the_installed_wheel_runs_every_example_with_mock(installed, workdir, example):
    record = _first_case_input(example)
    command = [installed / "pipeline", "run", f"pipelines/{example.name}", "--mock", "--input", json.dumps(record)]
    result = _run(command, cwd=workdir)
    assert isinstance(json.loads(result.stdout), dict)
    assert "1 ok, 0 failed" in result.stderr


@pytest.mark.wheel
def test_the_installed_wheel_replays_the_examples_cases_and_lists_models(installed, workdir):
    for example in EXAMPLE_FILES:
        cases = f"pipelines/{example.stem}.cases.yaml"
        _run([installed / "pipeline", "test", f"pipelines/{example.name}", "--cases", cases], cwd=workdir)
    models = _run([installed / "pipeline", "models", "--format", "json"], cwd=workdir)
    assert "google/gemini-2.5-flash-lite" in {row["id"] for row in json.loads(models.stdout)}
