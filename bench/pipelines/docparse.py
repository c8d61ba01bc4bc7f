"""B9's CPU-heavy code step: parse an HTML document (the record's), count its words, pick its headings."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

WORD = re.compile(r"[a-z]+")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.words: Counter[str] = Counter()
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag):
        self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings.append(data.strip())
        self.words.update(WORD.findall(data.lower()))


def parse(document: str, rounds: int = 1) -> dict:
    """The document's headings, word count and most common words (`rounds` parses: a heavier document)."""
    for _ in range(rounds):
        parser = _Text()
        parser.feed(document)
        parser.close()
    return {
        "headings": parser.headings[:5],
        "words": sum(parser.words.values()),
        "top": [word for word, _ in parser.words.most_common(5)],
    }
