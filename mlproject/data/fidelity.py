"""How much of a page's main text a document kept: the word recall that the scrape report gives per
page and per crawl, and the fidelity benchmark per site generator (benchmarks/fidelity.py). The
words themselves are counted where pages are extracted (extract.py: `words`, `body_words`).

Words are compared as multisets after Unicode NFC normalisation and case folding, so a word that a
page says twice must be in the document twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


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
    return Recall(sum(min(count, document[word]) for word, count in reference.items()), sum(reference.values()))


def leaked(navigation: Counter, main: Counter, document: Counter) -> int:
    """Navigation words in the document beyond what the main content itself says."""
    return sum(min(count, max(0, document[word] - main[word])) for word, count in navigation.items())
