"""Shared prompt pieces: `{% include %}`, `{% import %}`, `{% from ... import %}` and `{% extends %}` of
files in the pipeline's folder, and only there.

Every name is checked when the pipeline loads: it must be a literal string (a record's data never picks
a file), relative, inside the pipeline's folder once symlinks are followed, and an existing UTF-8 file;
the files are read then, once, with the files they include in turn. Rendering serves them from memory
(`IncludedTemplates`), so a run never reads a file while it renders and never reaches another one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

import jinja2
from jinja2 import nodes

from ..errors import SpecError
from ..spec.model import Template

_LOADING_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_STATEMENT = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from", nodes.Extends: "extends"}


class IncludedTemplates(jinja2.BaseLoader):
    """The Jinja loader of one pipeline: only the files its templates name, read when it loaded."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        self._sources = dict(sources)  # name as written -> (source, file path)

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template not in self._sources:
            raise jinja2.TemplateNotFound(
                template, f"'{template}' was not named by a literal include or import when the pipeline loaded"
            )
        source, path = self._sources[template]
        return source, path, lambda: True


def included_sources(
    templates: Iterable[Template], folder: Path, parse: Callable[[str, str], nodes.Template]
) -> dict[str, tuple[str, str]]:
    """Every file the templates include or import (and those files in turn), by name: (source, path).

    `parse(source, path)` is the environment's parser. Raises SpecError naming the template, its line and
    the name; a syntax error inside an included file names that file and line.
    """
    sources: dict[str, tuple[str, str]] = {}
    pending: list[tuple[str, nodes.Template, Template | None]] = []
    for template in templates:
        try:
            tree = parse(template.source, template.path)
        except jinja2.TemplateSyntaxError:
            continue  # the template itself is reported where it is compiled
        pending.append((template.path, tree, template))
    while pending:
        path, tree, template = pending.pop()
        for name, node in _named_files(tree, path, template):
            if name in sources:
                continue
            resolved = _resolve(name, folder, _where(path, template, node), _statement(node))
            text = _read(resolved, name, _where(path, template, node))
            sources[name] = (text, str(resolved))
            try:
                included = parse(text, str(resolved))
            except jinja2.TemplateSyntaxError as exc:
                raise SpecError(
                    f"included template '{name}': {exc.message}", path=str(resolved), line=exc.lineno
                ) from None
            pending.append((str(resolved), included, None))
    return sources


def _named_files(tree: nodes.Template, path: str, template: Template | None) -> Iterator[tuple[str, nodes.Node]]:
    for node in tree.find_all(_LOADING_NODES):
        names = node.template
        literals = names.items if isinstance(names, nodes.List | nodes.Tuple) else [names]
        for literal in literals:
            if not (isinstance(literal, nodes.Const) and isinstance(literal.value, str)):
                raise _error(
                    f"the name in `{{% {_statement(node)} %}}` must be a literal string ('parts/rules.j2'), so that "
                    "no record's data can choose a file; use {% if %} to choose between literal names",
                    _where(path, template, node),
                )
            yield literal.value, node


def _resolve(name: str, folder: Path, where: tuple[str, int, str], statement: str) -> Path:
    written = f"`{{% {statement} '{name}' %}}`"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise _error(f"{written}: an absolute path is refused; name a file relative to the pipeline's folder", where)
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise _error(
            f"{written}: '..' is refused; templates may include only files in the pipeline's folder ({folder}) "
            "or below it",
            where,
        )
    candidate = (folder / name).resolve()
    if not candidate.is_relative_to(folder):
        raise _error(
            f"{written}: it leads outside the pipeline's folder ({folder}) through a symbolic link; "
            "keep shared pieces in the pipeline's folder or below it",
            where,
        )
    if not candidate.is_file():
        raise _error(f"{written}: no such file in the pipeline's folder (looked for {candidate})", where)
    return candidate


def _read(path: Path, name: str, where: tuple[str, int, str]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise _error(f"cannot read included template '{name}': {reason}", where) from None


def _statement(node: nodes.Node) -> str:
    return _STATEMENT[type(node)]


def _where(path: str, template: Template | None, node: nodes.Node) -> tuple[str, int, str]:
    """(file, line, label) of a statement: in a template of the pipeline file, or in an included file."""
    if template is None:
        return path, node.lineno, f"included file {path}"
    return template.path, template.line + node.lineno - 1, template.label


def _error(message: str, where: tuple[str, int, str]) -> SpecError:
    path, line, label = where
    return SpecError(f"{label}: {message}", path=path, line=line)
