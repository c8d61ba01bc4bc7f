"""Python functions a pipeline names as `module:function` (code steps, tools): finding the module's file
(next to the pipeline file first, then on sys.path), reading a function's signature from its source with
`ast` (nothing imported, nothing run), checking keyword arguments against it, and importing the function
when a run needs it.

Finding and reading never import: loading and `pipeline validate` use them on code that may crash at import
time. Only `import_function` runs the module.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import inspect
import re
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError

REF = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")
NEXT_TO_PIPELINE = "next to the pipeline file"
ON_SYS_PATH = "on sys.path"


class LookupProblem(Exception):
    """Why a `module:function` reference cannot be used; the caller words where it is written."""


class Compiled(LookupProblem):
    """The module exists but has no Python source to read (an extension or a built-in module)."""


@dataclass(frozen=True)
class ModuleFile:
    """Where a module was found; `path` is None for a built-in module."""

    name: str
    path: Path | None
    where: str  # NEXT_TO_PIPELINE | ON_SYS_PATH

    @property
    def readable(self) -> bool:
        return self.path is not None and self.path.suffix == ".py"


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # inspect.Parameter's kind names: POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD, VAR_POSITIONAL, ...
    annotation: str | None = None  # as written in the source
    default: str | None = None  # as written in the source; None when there is no default
    has_default: bool = False
    line: int | None = None  # in the module's source


@dataclass(frozen=True)
class FunctionSignature:
    """A function as its source writes it. `parameters` is None when the name is bound some other way
    (imported, assigned, a star import): it exists, but its parameters cannot be read without running it."""

    module: str
    name: str
    path: Path
    line: int
    parameters: tuple[Parameter, ...] | None
    is_async: bool = False
    returns: str | None = None
    docstring: str | None = None
    decorators: tuple[str, ...] = ()

    @property
    def checkable(self) -> bool:
        """Whether the parameters read from the source are the ones a call meets (a decorator may change them)."""
        return self.parameters is not None and not self.decorators

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def split_ref(ref: str) -> tuple[str, str]:
    """`module:function` -> (module, function); LookupProblem for anything else."""
    match = REF.match(ref)
    if match is None:
        raise LookupProblem(f"'{ref}' is not of the form module:function (for example support_tools:get_order)")
    return match["module"], match["function"]


def find_module(module: str, folder: Path) -> ModuleFile | None:
    """The file of `module` (dotted names allowed) next to the pipeline file, else on sys.path; no import."""
    parts = module.split(".")
    candidate = folder.joinpath(*parts)
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if path.is_file():
            return ModuleFile(module, path, NEXT_TO_PIPELINE)
    if module in sys.builtin_module_names:
        return ModuleFile(module, None, ON_SYS_PATH)
    # PathFinder looks a name up in the given folders without importing anything, parents included.
    search: Iterable[str] | None = None
    spec = None
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = spec.submodule_search_locations
        if depth < len(parts) and search is None:
            return None  # a plain module where a package was needed
    origin = spec.origin if spec is not None else None
    if origin is None or not Path(origin).is_file():
        return None  # a namespace package: no code to call into
    return ModuleFile(module, Path(origin), ON_SYS_PATH)


def read_function(ref: str, folder: Path) -> FunctionSignature:
    """The function `ref` names, read from its module's source (never imported).

    LookupProblem when the reference, the module or the function is missing (Compiled when the module has no
    source); SpecError naming the module's file and line when its source does not parse.
    """
    module, function = split_ref(ref)
    found = find_module(module, folder)
    if found is None:
        raise LookupProblem(f"no module '{module}' {NEXT_TO_PIPELINE} ({folder}) or {ON_SYS_PATH}")
    if not found.readable:
        raise Compiled(f"module '{module}' is compiled ({found.path or 'built-in'})")
    signature = read_signature(found, function)
    if signature is None:
        raise LookupProblem(f"module '{module}' ({found.path}) has no function '{function}'")
    return signature


def read_signature(found: ModuleFile, function: str) -> FunctionSignature | None:
    """The top-level `def`/`async def` named `function` in the module's source; None when nothing binds the name.

    Raises SpecError naming the module's file and line when the source does not parse.
    """
    assert found.path is not None
    try:
        text = found.path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(found.path))
    except SyntaxError as exc:
        raise SpecError(
            f"module '{found.name}' has a syntax error: {exc.msg}", path=str(found.path), line=exc.lineno
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read module '{found.name}': {exc}", path=str(found.path)) from None
    found_def: FunctionSignature | None = None
    for statement in _top_level(tree.body):
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name == function:
            found_def = _signature(found, statement)
        elif function in _bound_names(statement):
            found_def = FunctionSignature(found.name, function, found.path, statement.lineno, None)
    if found_def is None and any(_binds_anything(statement) for statement in _top_level(tree.body)):
        # `from x import *` or a module `__getattr__`: the name may exist; its parameters cannot be read.
        return FunctionSignature(found.name, function, found.path, 1, None)
    return found_def


def argument_problems(parameters: tuple[Parameter, ...], given: Iterable[str]) -> tuple[tuple[str | None, str], ...]:
    """What is wrong with calling a function with these keyword arguments: (argument name or None, problem)."""
    given = tuple(given)
    by_name = {parameter.name: parameter for parameter in parameters}
    takes_any = any(parameter.kind == "VAR_KEYWORD" for parameter in parameters)
    keywords = keyword_names(parameters)
    problems: list[tuple[str | None, str]] = []
    for name in given:
        parameter = by_name.get(name)
        if parameter is not None and parameter.kind == "POSITIONAL_ONLY":
            problems.append((name, f"'{name}' is positional-only, and `args` are passed by name"))
        elif (parameter is None or parameter.kind.startswith("VAR_")) and not takes_any:
            takes = ", ".join(keywords) if keywords else "no keyword arguments"
            problems.append((name, f"the function takes no argument '{name}' (it takes: {takes})"))
    for parameter in parameters:
        if parameter.has_default or parameter.kind.startswith("VAR_"):
            continue
        if parameter.kind == "POSITIONAL_ONLY":
            problems.append((None, f"'{parameter.name}' is a required positional-only parameter; `args` pass names"))
        elif parameter.name not in given:
            problems.append((None, f"argument '{parameter.name}' is required and missing from `args`"))
    return tuple(problems)


def keyword_names(parameters: tuple[Parameter, ...]) -> list[str]:
    """The parameters a call may pass by name, in order."""
    return [p.name for p in parameters if p.kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")]


def runtime_parameters(function: Callable[..., Any]) -> tuple[Parameter, ...] | None:
    """The parameters of an imported function (None when Python cannot tell them, as for some built-ins)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    return tuple(
        Parameter(name, parameter.kind.name, has_default=parameter.default is not inspect.Parameter.empty)
        for name, parameter in signature.parameters.items()
    )


def import_function(ref: str, folder: Path) -> Callable[..., Any]:
    """Import the module `ref` names (next to the pipeline file first, then sys.path) and return its function.

    A module next to the pipeline is imported inside a package of its own per folder, so two pipelines'
    `tools.py` never meet in sys.modules; the folder is on sys.path while it imports, for its own imports.
    Raises LookupProblem when the module or function is missing; an exception raised by the module itself
    propagates, for the caller to log.
    """
    module, function = split_ref(ref)
    found = find_module(module, folder)
    if found is None:
        raise LookupProblem(f"no module '{module}' {NEXT_TO_PIPELINE} ({folder}) or {ON_SYS_PATH}")
    beside = found.where == NEXT_TO_PIPELINE
    loaded = _import_beside(module, folder) if beside else importlib.import_module(module)
    target = getattr(loaded, function, None)
    if target is None:
        raise LookupProblem(f"module '{module}' ({found.path or 'built-in'}) has no function '{function}'")
    if not callable(target):
        raise LookupProblem(f"'{ref}' is a {type(target).__name__}, not a function")
    return target


def import_failure(module: str, error: BaseException) -> str:
    """What went wrong importing the user's `module`, in one line: the exception and the file and line that
    raised it (for a SyntaxError, the offending line; else the innermost frame outside importlib's machinery)."""
    where = None
    if isinstance(error, SyntaxError) and error.filename:
        where = f"{error.filename}:{error.lineno}"
    else:
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith("<")]
        if frames:
            where = f"{frames[-1].filename}:{frames[-1].lineno}"
    told = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return f"importing module '{module}' raised {told}" + (f" ({where})" if where else "")


def _import_beside(module: str, folder: Path) -> types.ModuleType:
    package = "_pipeline_code_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    if package not in sys.modules:
        namespace = types.ModuleType(package)
        namespace.__path__ = [str(folder)]
        namespace.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
        namespace.__spec__.submodule_search_locations = [str(folder)]
        sys.modules[package] = namespace
    added = str(folder) not in sys.path
    if added:
        sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(f"{package}.{module}")
    finally:
        if added:
            sys.path.remove(str(folder))


def _top_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements that run at import time at the module's top level, `if` and `try` blocks included."""
    for statement in body:
        yield statement
        if isinstance(statement, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for inner in getattr(statement, block, ()):
                    yield from _top_level(inner.body if isinstance(inner, ast.ExceptHandler) else [inner])


def _bound_names(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    if isinstance(statement, ast.ClassDef):
        return {statement.name}
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        targets = [statement.target]
    return {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}


def _binds_anything(statement: ast.stmt) -> bool:
    star = isinstance(statement, ast.ImportFrom) and any(alias.name == "*" for alias in statement.names)
    module_getattr = isinstance(statement, ast.FunctionDef) and statement.name == "__getattr__"
    return star or module_getattr


def _signature(found: ModuleFile, node: ast.FunctionDef | ast.AsyncFunctionDef) -> FunctionSignature:
    arguments = node.args
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    kinds = ["POSITIONAL_ONLY"] * len(arguments.posonlyargs) + ["POSITIONAL_OR_KEYWORD"] * len(arguments.args)
    parameters = [
        _parameter(argument, kind, default) for argument, kind, default in zip(positional, kinds, defaults, strict=True)
    ]
    if arguments.vararg is not None:
        parameters.append(_parameter(arguments.vararg, "VAR_POSITIONAL", None))
    parameters += [
        _parameter(argument, "KEYWORD_ONLY", default)
        for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
    ]
    if arguments.kwarg is not None:
        parameters.append(_parameter(arguments.kwarg, "VAR_KEYWORD", None))
    assert found.path is not None
    return FunctionSignature(
        module=found.name,
        name=node.name,
        path=found.path,
        line=node.lineno,
        parameters=tuple(parameters),
        is_async=isinstance(node, ast.AsyncFunctionDef),
        returns=ast.unparse(node.returns) if node.returns is not None else None,
        docstring=ast.get_docstring(node),
        decorators=tuple(ast.unparse(decorator) for decorator in node.decorator_list),
    )


def _parameter(argument: ast.arg, kind: str, default: ast.expr | None) -> Parameter:
    return Parameter(
        name=argument.arg,
        kind=kind,
        annotation=ast.unparse(argument.annotation) if argument.annotation is not None else None,
        default=ast.unparse(default) if default is not None else None,
        has_default=default is not None,
        line=argument.lineno,
    )
