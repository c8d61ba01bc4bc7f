"""A tool's JSON Schema from its function's signature as `pymodules` reads it from the source (never
imported): parameters from the signature, types from the hints, descriptions from the docstring (Google,
NumPy or Sphinx style). A parameter that JSON Schema cannot describe is an `Undescribable` naming it."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from .pymodules import FunctionSignature, Parameter

SCALARS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "None": "null", "NoneType": "null"}
ARRAYS = {"list", "List", "Sequence", "MutableSequence", "Iterable", "Collection", "tuple", "Tuple", "set", "Set"}
ARRAYS |= {"frozenset", "FrozenSet", "AbstractSet"}
OBJECTS = {"dict", "Dict", "Mapping", "MutableMapping"}
ANY = {"Any", "object"}
UNIQUE = {"set", "Set", "frozenset", "FrozenSet", "AbstractSet"}
SUPPORTED = (
    "str, int, float, bool, None, list[...], tuple[...], set[...], dict[str, ...], Literal[...], "
    "Optional[...], X | Y, Annotated[...], Any"
)

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):\s*$")
_OTHER_SECTION = re.compile(
    r"^(Returns?|Yields?|Raises|Examples?|Notes?|See Also|Attributes|Warnings?|References):?\s*$"
)
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")
_SPHINX = re.compile(r"^:param\s+(?:[^:]*\s)?(?P<name>\w+)\s*:\s*(?P<text>.*)$")
_NUMPY_RULE = re.compile(r"^-{3,}\s*$")


class Undescribable(Exception):
    """A parameter JSON Schema cannot describe: `parameter`, the reason, and its line in the module."""

    def __init__(self, parameter: str, reason: str, line: int | None) -> None:
        super().__init__(f"parameter '{parameter}' {reason}")
        self.parameter = parameter
        self.reason = reason
        self.line = line


def function_schema(signature: FunctionSignature) -> tuple[str | None, dict[str, Any]]:
    """The function's description (the docstring's opening text) and its parameters as a JSON Schema object.

    `signature` is one read from the source (`parameters` not None)."""
    description, documented = parse_docstring(signature.docstring)
    parameters = signature.parameters or ()
    for parameter in parameters:
        if parameter.kind == "POSITIONAL_ONLY":
            raise Undescribable(
                parameter.name, "is positional-only; a tool is called with keyword arguments", parameter.line
            )
    for parameter in parameters:
        if parameter.kind.startswith("VAR_"):
            stars = "*" if parameter.kind == "VAR_POSITIONAL" else "**"
            raise Undescribable(
                parameter.name, f"is `{stars}{parameter.name}`; a tool's parameters must each be named", parameter.line
            )
    properties: dict[str, Any] = {}
    required = []
    for parameter in parameters:
        properties[parameter.name] = _parameter(parameter, documented.get(parameter.name))
        if not parameter.has_default:
            required.append(parameter.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return description, schema


def _parameter(parameter: Parameter, documented: str | None) -> dict[str, Any]:
    if parameter.annotation is None:
        raise Undescribable(parameter.name, "has no type hint", parameter.line)
    try:
        schema = annotation_schema(ast.parse(parameter.annotation, mode="eval").body)
    except ValueError as exc:
        raise Undescribable(
            parameter.name, f"has type `{exc}`, which JSON Schema cannot describe", parameter.line
        ) from None
    if parameter.default is not None:
        try:
            value = ast.literal_eval(parameter.default)
            json.dumps(value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            pass  # a computed default: the parameter is optional, its default stays unsaid
        else:
            if value is None and not _allows_null(schema):
                schema = union([schema, {"type": "null"}])
            schema["default"] = list(value) if isinstance(value, tuple) else value
    if documented and "description" not in schema:
        schema["description"] = documented
    return schema


def annotation_schema(node: ast.expr) -> dict[str, Any]:
    """The JSON Schema of a type hint; ValueError carrying the part that has none."""
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"type": "null"}
        if isinstance(node.value, str):  # a forward reference, "list[str]"
            try:
                parsed = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                raise ValueError(node.value) from None
            return annotation_schema(parsed)
        raise ValueError(ast.unparse(node))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return union([annotation_schema(node.left), annotation_schema(node.right)])
    if isinstance(node, ast.Subscript):
        return _generic(_name(node.value), node)
    name = _name(node)
    if name in SCALARS:
        return {"type": SCALARS[name]}
    if name in ARRAYS:
        return {"type": "array", **({"uniqueItems": True} if name in UNIQUE else {})}
    if name in OBJECTS:
        return {"type": "object"}
    if name in ANY:
        return {}
    raise ValueError(ast.unparse(node))


def _generic(name: str, node: ast.Subscript) -> dict[str, Any]:
    arguments = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if name == "Optional":
        return union([annotation_schema(arguments[0]), {"type": "null"}])
    if name == "Union":
        return union([annotation_schema(argument) for argument in arguments])
    if name == "Literal":
        values = [_literal(argument, node) for argument in arguments]
        types = sorted({_json_type(value) for value in values})
        return {"type": types[0] if len(types) == 1 else types, "enum": values}
    if name == "Annotated":
        schema = annotation_schema(arguments[0])
        notes = [arg.value for arg in arguments[1:] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        return {**schema, "description": notes[0]} if notes else schema
    if name in ("tuple", "Tuple"):
        if len(arguments) == 2 and isinstance(arguments[1], ast.Constant) and arguments[1].value is Ellipsis:
            return {"type": "array", "items": annotation_schema(arguments[0])}
        items = [annotation_schema(argument) for argument in arguments]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if name in ARRAYS:
        schema = {"type": "array", "items": annotation_schema(arguments[0])}
        return {**schema, "uniqueItems": True} if name in UNIQUE else schema
    if name in OBJECTS:
        if len(arguments) != 2 or _name(arguments[0]) != "str":
            raise ValueError(ast.unparse(node))  # JSON object keys are strings
        return {"type": "object", "additionalProperties": annotation_schema(arguments[1])}
    raise ValueError(ast.unparse(node))


def _name(node: ast.expr) -> str:
    """`List` of `List`, `typing.List` and `t.List`; "" for anything that is not a name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    return ""


def _literal(argument: ast.expr, node: ast.Subscript) -> Any:
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str | int | float | bool | type(None)):
        return argument.value
    raise ValueError(ast.unparse(node))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number"}[type(value)]


def union(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema accepting any of `schemas`: a list of types when each is a bare type, else anyOf."""
    flat: list[dict[str, Any]] = []
    for schema in schemas:
        flat.extend(schema["anyOf"] if set(schema) == {"anyOf"} else [schema])
    if any(not schema for schema in flat):
        return {}  # Any absorbs the rest
    if all(set(schema) == {"type"} for schema in flat):
        types: list[str] = []
        for schema in flat:
            for kind in schema["type"] if isinstance(schema["type"], list) else [schema["type"]]:
                if kind not in types:
                    types.append(kind)
        return {"type": types[0] if len(types) == 1 else types}
    return {"anyOf": flat}


def _allows_null(schema: dict[str, Any]) -> bool:
    kinds = schema.get("type")
    if not schema or kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(_allows_null(option) for option in schema.get("anyOf", ()))


def parse_docstring(text: str | None) -> tuple[str | None, dict[str, str]]:
    """The docstring's description (its text before any section) and each documented parameter's text."""
    if not text:
        return None, {}
    lines = text.splitlines()
    description: list[str] = []
    documented: dict[str, str] = {}
    in_sections = False  # the description is the text before the first section
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        numpy_header = index + 1 < len(lines) and _NUMPY_RULE.match(lines[index + 1].strip())
        if _SECTION.match(stripped) or (numpy_header and stripped in ("Parameters", "Other Parameters")):
            index = _read_section(lines, index + (2 if numpy_header else 1), _indent(line), documented, numpy_header)
        elif _SPHINX.match(stripped):
            index = _read_sphinx(lines, index, documented)
        elif _OTHER_SECTION.match(stripped) or numpy_header or stripped.startswith(":"):
            index = _skip_section(lines, index + (2 if numpy_header else 1), _indent(line), numpy_header)
        else:
            if not in_sections:
                description.append(stripped)
            index += 1
            continue
        in_sections = True
    return _paragraphs(description), documented


def _read_section(lines: list[str], index: int, header: int, documented: dict[str, str], numpy: bool) -> int:
    """Google (`name (type): text`, deeper lines continue it) or NumPy (`name : type`, text below)."""
    entry_indent = None
    current: str | None = None
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        indent = _indent(line)
        if (indent <= header and not numpy) or (numpy and indent <= header and _ends_numpy_section(lines, index)):
            break
        entry_indent = indent if entry_indent is None else entry_indent
        if indent == entry_indent:
            stripped = line.strip()
            if numpy:
                current = stripped.split(":", 1)[0].strip().lstrip("*")
                documented[current] = ""
            else:
                match = _GOOGLE_ENTRY.match(stripped)
                current = match["name"] if match else None
                if current is not None:
                    documented[current] = match["text"].strip()
        elif current is not None:
            documented[current] = f"{documented[current]} {line.strip()}".strip()
        index += 1
    return index


def _ends_numpy_section(lines: list[str], index: int) -> bool:
    """A NumPy section ends where the next one starts: a title over a rule of dashes."""
    return index + 1 < len(lines) and bool(_NUMPY_RULE.match(lines[index + 1].strip()))


def _read_sphinx(lines: list[str], index: int, documented: dict[str, str]) -> int:
    match = _SPHINX.match(lines[index].strip())
    name, text = match["name"], [match["text"].strip()]
    index += 1
    while index < len(lines) and lines[index].strip() and not lines[index].strip().startswith(":"):
        text.append(lines[index].strip())
        index += 1
    documented[name] = " ".join(part for part in text if part)
    return index


def _skip_section(lines: list[str], index: int, header: int, numpy: bool) -> int:
    """Past a section the tool does not use (Returns, Raises, ...): its deeper lines, or a NumPy one's body."""
    while index < len(lines) and (not lines[index].strip() or _indent(lines[index]) > header or numpy):
        if numpy and _indent(lines[index]) <= header and _ends_numpy_section(lines, index):
            break
        index += 1
    return index


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _paragraphs(lines: list[str]) -> str | None:
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    text = "\n\n".join(" ".join(paragraph) for paragraph in paragraphs if paragraph)
    return text or None
