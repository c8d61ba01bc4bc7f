"""Safe YAML loading that remembers where every key and value was written, for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import SpecError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceMap:
    """Line and column (1-based) of each value and each mapping key, by JSON path."""

    path: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    lines: tuple[str, ...] = ()  # the file's text, so messages can point at a column inside a value

    def where(self, location: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """The closest known position: the exact node, else its nearest written ancestor."""
        table = self.keys if key else self.values
        probe = tuple(location)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def error(self, message: str, location: Path, *, key: bool = False, field: str | None = None) -> SpecError:
        line, column = self.where(location, key=key)
        return SpecError(message, path=self.path, line=line, column=column, field=field)


def load_yaml(text: str, path: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document with the safe loader; duplicate keys are errors, not silent overwrites."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError("the file is empty; a pipeline needs at least `name` and `steps`", path=path, line=1)
        source = SourceMap(path=path, lines=tuple(text.splitlines()))
        _walk(node, (), source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark:
            problem = f"{exc.context} (line {exc.context_mark.line + 1}): {problem}"
        raise SpecError(f"invalid YAML: {problem}", path=path, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", path=path) from None
    finally:
        loader.dispose()
    return data, source


def _walk(node: yaml.Node, location: Path, source: SourceMap) -> None:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        line += 1  # a block scalar's text starts on the line after its indicator
    source.values[location] = (line, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    f"duplicate key '{key}' (first written on line {seen[key]}); YAML would silently keep the last",
                    path=source.path,
                    line=line,
                    column=key_node.start_mark.column + 1,
                    field=str(key),
                )
            seen[key] = line
            child = (*location, key)
            source.keys[child] = (line, key_node.start_mark.column + 1)
            _walk(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*location, index), source)
