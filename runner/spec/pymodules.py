"""Python functions a pipeline names as `module:function`: the module's file found next to the pipeline
file first, then on sys.path, and its source read with `ast`, so loading and `pipeline validate`
never import user code. Only a run imports it (`import_function`)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REF = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$", re.ASCII)


class LookupProblem(Exception):
    """Why a `module:function` reference cannot be used; the caller words where it is written."""


@dataclass(frozen=True)
class FunctionSource:
    """A function found in a module's source, without importing it."""

    module: str
    name: str
    path: Path
    node: ast.FunctionDef | ast.AsyncFunctionDef | None  # None: the name is bound another way (import, assignment)

    @property
    def where(self) -> str:
        line = f":{self.node.lineno}" if self.node is not None else ""
        return f"{self.path}{line}"


def split_ref(ref: str) -> tuple[str, str]:
    match = REF.match(ref)
    if match is None:
        raise LookupProblem(f"'{ref}' is not of the form module:function (for example support_tools:get_order)")
    return match["module"], match["function"]


def find_module(module: str, folder: Path) -> Path | None:
    """The source file of `module`: beside the pipeline file first, then on sys.path; None when absent.

    Walks the folders itself: `importlib.util.find_spec` would import a dotted name's parent packages.
    """
    relative = Path(*module.split("."))
    for base in (folder, *(Path(entry or ".") for entry in sys.path)):
        for candidate in (base / relative.with_suffix(".py"), base / relative / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def read_function(ref: str, folder: Path) -> FunctionSource:
    """The function `ref` names, read from its module's source (never imported)."""
    module, name = split_ref(ref)
    path = find_module(module, folder)
    if path is None:
        raise LookupProblem(f"module '{module}' not found next to the pipeline file ({folder}) or on sys.path")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise LookupProblem(f"cannot read module '{module}' ({path}): {exc}") from None
    bound = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return FunctionSource(module, name, path, node)
        bound = bound or name in _names_bound(node)
    if bound:
        return FunctionSource(module, name, path, None)
    raise LookupProblem(f"module '{module}' ({path}) has no function '{name}'")


def _names_bound(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {target.id for target in targets if isinstance(target, ast.Name)}
    if isinstance(node, ast.ClassDef):
        return {node.name}
    return set()


def import_function(ref: str, folder: Path) -> Callable[..., Any]:
    """Import the function `ref` names (a run does this; loading never does). A module beside the pipeline
    file is loaded from that file under its own name, so it wins over one of the same name on sys.path."""
    module_name, name = split_ref(ref)
    path = find_module(module_name, folder)
    if path is None:
        raise LookupProblem(f"module '{module_name}' not found next to the pipeline file ({folder}) or on sys.path")
    loaded = sys.modules.get(module_name)
    if loaded is None or Path(getattr(loaded, "__file__", "") or "").resolve() != path:
        if path.is_relative_to(folder.resolve()):
            loaded = _load_file(module_name, path)
        else:
            loaded = importlib.import_module(module_name)
    function = getattr(loaded, name, None)
    if not callable(function):
        raise LookupProblem(f"module '{module_name}' ({path}) has no function '{name}'")
    return function


def _load_file(module_name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LookupProblem(f"cannot import '{module_name}' from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
