"""A string that matches a regular expression (a JSON Schema `pattern`), for the fake's values.

Walks the tree of Python's own regex parser (the parser rstr and exrex use too), so classes,
ranges, categories, repeats, groups, alternation and backreferences come out right. Lookaheads
and word boundaries are not generated (a lookbehind's text is): the caller checks every result
with `re.search` and tries again or gives up; nothing here promises a match.
"""

from __future__ import annotations

import random
import re
import string

try:  # Python 3.11+
    from re import _constants as _sre
    from re import _parser
except ImportError:  # pragma: no cover - Python 3.10 and older
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

_WORD_CHARS = string.ascii_letters + string.digits + "_"
_POOL = string.ascii_lowercase + string.ascii_uppercase + string.digits + "_-. @/:"
_CATEGORIES = {
    _sre.CATEGORY_DIGIT: (string.digits, lambda ch: ch.isdigit()),
    _sre.CATEGORY_NOT_DIGIT: (string.ascii_letters, lambda ch: not ch.isdigit()),
    _sre.CATEGORY_WORD: (_WORD_CHARS, lambda ch: ch.isalnum() or ch == "_"),
    _sre.CATEGORY_NOT_WORD: (" -.,", lambda ch: not (ch.isalnum() or ch == "_")),
    _sre.CATEGORY_SPACE: (" ", lambda ch: ch.isspace()),
    _sre.CATEGORY_NOT_SPACE: (string.ascii_letters, lambda ch: not ch.isspace()),
}


class _Unsupported(Exception):
    pass


def example(pattern: str, rng: random.Random, *, extra_repeats: int = 3) -> str | None:
    """One string matching `pattern` in full, or None when the pattern cannot be parsed or built."""
    try:
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    builder = _Builder(rng, extra_repeats)
    try:
        return builder.emit(parsed)
    except (_Unsupported, RecursionError):
        return None


class _Builder:
    def __init__(self, rng: random.Random, extra_repeats: int) -> None:
        self.rng = rng
        self.extra_repeats = extra_repeats
        self.groups: dict[int, str] = {}

    def emit(self, tokens) -> str:
        return "".join(self._token(op, argument) for op, argument in tokens)

    def _token(self, op, argument) -> str:
        if op == _sre.LITERAL:
            return chr(argument)
        if op == _sre.NOT_LITERAL:
            return self._pick(lambda ch: ord(ch) != argument)
        if op == _sre.ANY:
            return self.rng.choice(string.ascii_lowercase)
        if op == _sre.IN:
            return self._in(argument)
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)):
            low, high, sub = argument
            high = low + self.extra_repeats if high == _sre.MAXREPEAT else min(high, low + self.extra_repeats)
            return "".join(self.emit(sub) for _ in range(self.rng.randint(low, high)))
        if op == _sre.SUBPATTERN:
            group, _add_flags, _del_flags, sub = argument
            text = self.emit(sub)
            if group is not None:
                self.groups[group] = text
            return text
        if op == getattr(_sre, "ATOMIC_GROUP", None):
            return self.emit(argument)
        if op == _sre.BRANCH:
            _, alternatives = argument
            return self.emit(self.rng.choice(alternatives))
        if op == _sre.GROUPREF:
            return self.groups.get(argument, "")
        if op == _sre.GROUPREF_EXISTS:
            group, yes, no = argument
            return self.emit(yes) if group in self.groups else (self.emit(no) if no else "")
        if op == _sre.ASSERT and argument[0] < 0:
            return self.emit(argument[1])  # a lookbehind's text, placed just before what follows
        if op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
            return ""  # anchors and lookaheads add no characters; the caller checks the result
        raise _Unsupported(str(op))

    def _in(self, items) -> str:
        negated = bool(items) and items[0][0] == _sre.NEGATE
        if negated:
            return self._pick(lambda ch: not _in_set(ch, items[1:]))
        choices: list[str] = []
        for op, argument in items:
            if op == _sre.LITERAL:
                choices.append(chr(argument))
            elif op == _sre.RANGE:
                low, high = argument
                choices.append(chr(self.rng.randint(low, min(high, low + 25))))
            elif op == _sre.CATEGORY:
                choices.append(self.rng.choice(_category(argument)[0]))
            else:
                raise _Unsupported(str(op))
        if not choices:
            raise _Unsupported("empty class")
        return self.rng.choice(choices)

    def _pick(self, accepts) -> str:
        candidates = [ch for ch in _POOL if accepts(ch)]
        if not candidates:
            raise _Unsupported("no character fits")
        return self.rng.choice(candidates)


def _in_set(ch: str, items) -> bool:
    for op, argument in items:
        if op == _sre.LITERAL and ch == chr(argument):
            return True
        if op == _sre.RANGE and argument[0] <= ord(ch) <= argument[1]:
            return True
        if op == _sre.CATEGORY and _category(argument)[1](ch):
            return True
    return False


def _category(name):
    if name not in _CATEGORIES:
        raise _Unsupported(str(name))
    return _CATEGORIES[name]
