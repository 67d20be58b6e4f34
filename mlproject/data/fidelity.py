"""How much of a page's main text a document kept: the word recall that the scrape report gives per
page and per crawl, and the fidelity benchmark per site generator (benchmarks/fidelity.py).

Words are compared as multisets after Unicode NFC normalisation and case folding, so a word that a
page says twice must be in the document twice.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from mlproject.data.extract import BODY, WORD, text_of


def words(text: str) -> Counter:
    return Counter(WORD.findall(unicodedata.normalize("NFC", text).casefold()))


def body_words(region) -> Counter:
    """Words of the outermost paragraphs, list items, definition terms and captions in `region`."""
    return words_of(outermost(region.find_all(BODY)))


def outermost(nodes: list) -> list:
    """The nodes not inside another of them, so no word is counted twice."""
    inside = {id(node) for node in nodes}
    return [node for node in nodes if not any(id(parent) in inside for parent in node.parents)]


def words_of(nodes: list) -> Counter:
    return sum((words(text_of(node)) for node in nodes), Counter())


@dataclass
class Recall:
    found: int = 0
    total: int = 0

    def __add__(self, other: "Recall") -> "Recall":
        return Recall(self.found + other.found, self.total + other.total)

    @property
    def share(self) -> float:
        return self.found / self.total if self.total else 1.0

    @property
    def missing(self) -> int:
        return self.total - self.found


def recall(reference: Counter, document: Counter) -> Recall:
    return Recall(sum(min(count, document[word]) for word, count in reference.items()),
                  sum(reference.values()))


def leaked(navigation: Counter, main: Counter, document: Counter) -> int:
    """Navigation words in the document beyond what the main content itself says."""
    return sum(min(count, max(0, document[word] - main[word])) for word, count in navigation.items())
