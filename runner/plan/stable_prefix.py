"""The stable prefix of a system template: the text it writes, the same for every record, before its
first per-record text. Only that prefix can carry a prompt-cache breakpoint; a breakpoint after
per-record text makes every request write the cache and none read it.

Stable are literal text and `{% include %}` of files that are themselves literal text (or include
such files). Anything else (a variable, a filter, a tag) ends the prefix, whatever it would render.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from jinja2 import nodes


@dataclass(frozen=True)
class StablePrefix:
    text: str  # what the template writes before its first per-record text
    whole: bool  # the template has no per-record text at all


def stable_prefix(environment: jinja2.Environment, source: str) -> StablePrefix:
    """The prefix of `source` rendered once, in `environment` (whose loader serves its includes)."""
    try:
        body = environment.parse(source).body
    except jinja2.TemplateSyntaxError:
        return StablePrefix("", False)  # loading reports it
    kept, whole = _leading_static(environment, body)
    if not kept:
        return StablePrefix("", whole)
    try:
        text = environment.from_string(nodes.Template(kept, lineno=1)).render()
    except jinja2.TemplateError:
        return StablePrefix("", False)
    return StablePrefix(text, whole)


def _leading_static(
    environment: jinja2.Environment, body: list[nodes.Node], including: frozenset[str] = frozenset()
) -> tuple[list[nodes.Node], bool]:
    """The leading nodes that write the same text for every record, and whether they are all of them."""
    kept: list[nodes.Node] = []
    for node in body:
        if isinstance(node, nodes.Output):
            data = []
            for child in node.nodes:
                if not isinstance(child, nodes.TemplateData):
                    return [*kept, nodes.Output(data, lineno=node.lineno)], False
                data.append(child)
            kept.append(node)
        elif isinstance(node, nodes.Include) and _static_include(environment, node, including):
            kept.append(node)
        else:
            return kept, False
    return kept, True


def _static_include(environment: jinja2.Environment, node: nodes.Include, including: frozenset[str]) -> bool:
    """An include of a literal name whose file is all literal text (a file that includes itself is not)."""
    name = node.template.value if isinstance(node.template, nodes.Const) else None
    if not isinstance(name, str) or name in including or environment.loader is None:
        return False
    try:
        source, _, _ = environment.loader.get_source(environment, name)
        body = environment.parse(source).body
    except jinja2.TemplateError:
        return False
    return _leading_static(environment, body, including | {name})[1]
