"""The spelling model behind a vocabulary's `<unk>`: the probability of the exact text an unknown
token stands for, so a char or word model pays for every byte it does not know.

A character n-gram with an end-of-token mark, interpolated Witten-Bell style down to a byte-level
base in which any character costs its UTF-8 bytes at 1/256 each. Every conditional distribution
sums to at most 1, so the probabilities of all finite strings do too: -log P is a true code length.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

END = ""  # the end-of-token mark among the symbols: no character is the empty string
START = "\x02"  # pads the context before a token's first character (a clash only pools counts)
END_BASE = 1 / 256  # the base's probability of the end mark
# Four characters of context: within 1% of the best order on held-out rare words, half the size
# (benchmarks/RESULTS-speller.json).
ORDER = 5
LONGEST_SAMPLE = 60  # characters; a generated word is cut there


def byte_cost(character: str) -> float:
    """The base's probability of a character: each of its UTF-8 bytes at 1/256."""
    return 256.0 ** -len(character.encode("utf-8"))


# Every character's byte_cost summed (128 one-byte, 1,920 two-byte, 61,440 three-byte outside the
# surrogates, 1,048,576 four-byte characters): what the base holds for characters.
ALL_CHARACTERS_MASS = 128 / 256 + 1920 / 256**2 + 61440 / 256**3 + 1048576 / 256**4


@dataclass(frozen=True)
class Speller:
    """`counts[context][symbol]`: how often `symbol` followed `context` (up to order-1 characters,
    START-padded) in the training tokens. `whole_token` spells a word and its end mark; otherwise
    the unknown token is exactly one character (the char level) and no end mark is spelled."""

    order: int = ORDER
    whole_token: bool = True
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def fit(cls, tokens: Iterable[str], whole_token: bool, order: int = ORDER) -> "Speller":
        counts: dict[str, Counter] = defaultdict(Counter)
        order = order if whole_token else 1
        for token in tokens:
            for context, symbol in cls.events(token, order, whole_token):
                for k in range(len(context) + 1):  # every shorter context too: the lower orders
                    counts[context[len(context) - k :]][symbol] += 1
        return cls(order, whole_token, {c: dict(n) for c, n in counts.items()})

    @staticmethod
    def events(token: str, order: int, whole_token: bool) -> list[tuple[str, str]]:
        padded = START * (order - 1) + token
        symbols = list(token) + ([END] if whole_token else [])
        return [(padded[i : i + order - 1], symbol) for i, symbol in enumerate(symbols)]

    # -- probabilities -------------------------------------------------------------------------
    def probability(self, context: str, symbol: str) -> float:
        """P(symbol | context), interpolated from the unigram up to the longest context."""
        p = END_BASE if symbol == END else byte_cost(symbol)
        for k in range(len(context) + 1):
            p = self.smoothed(context[len(context) - k :], symbol, p)
        return p

    @functools.cached_property
    def sizes(self) -> dict[str, tuple[int, int]]:
        """Per context: how many symbols followed it, and how many different ones."""
        return {context: (sum(followers.values()), len(followers)) for context, followers in self.counts.items()}

    @property
    def fitted(self) -> bool:
        """Whether it learnt from any token (else it spells by bytes alone, and writes noise)."""
        return bool(self.counts)

    def smoothed(self, context: str, symbol: str, lower: float) -> float:
        if context not in self.sizes:
            return lower
        seen, kinds = self.sizes[context]
        return (self.counts[context].get(symbol, 0) + kinds * lower) / (seen + kinds)

    def base_share(self, context: str) -> float:
        """What reaches the byte-level base after `context`: the product over the levels of the
        share each leaves to the one below (kinds / (seen + kinds))."""
        share = 1.0
        for k in range(len(context) + 1):
            seen, kinds = self.sizes.get(context[len(context) - k :], (0, 0))
            if kinds:
                share *= kinds / (seen + kinds)
        return share

    def nats(self, token: str) -> float:
        """-ln P(token): its characters one by one, then (for a word) its end."""
        return -sum(
            math.log(self.probability(context, symbol))
            for context, symbol in self.events(token, self.order, self.whole_token)
        )

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> str:
        """A token drawn from the model (cut at LONGEST_SAMPLE characters)."""
        alphabet = sorted(set(self.counts.get("", {})) - {END})  # every symbol it saw follows ""
        token = ""
        for _ in range(LONGEST_SAMPLE):
            history = START * (self.order - 1) + token
            context = history[len(history) - (self.order - 1) :]
            symbol = self.draw(context, alphabet, rng)
            if symbol == END:
                break
            token += symbol
            if not self.whole_token:
                break
        return token

    def draw(self, context: str, alphabet: list[str], rng: np.random.Generator) -> str:
        """One symbol after `context`: a known one, or a character the model never saw (drawn
        from the byte-level base), in proportion to their probabilities."""
        known = alphabet + ([END] if self.whole_token else [])
        weights = np.array([self.probability(context, s) for s in known])
        unseen = self.base_share(context) * (ALL_CHARACTERS_MASS - sum(byte_cost(c) for c in alphabet))
        pick = rng.choice(len(known) + 1, p=np.append(weights, unseen) / (weights.sum() + unseen))
        return known[pick] if pick < len(known) else unseen_character(set(alphabet), rng)

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"order": self.order, "whole_token": self.whole_token, "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict) -> "Speller":
        return cls(data["order"], data["whole_token"], data["counts"])


def unseen_character(known: set[str], rng: np.random.Generator) -> str:
    """A character outside `known`, each with probability in proportion to 256**-(its UTF-8
    length): random bytes, redrawn until they are one valid UTF-8 character."""
    while True:
        first = int(rng.integers(256))
        length = (
            1
            if first < 0x80
            else 2
            if 0xC2 <= first < 0xE0
            else 3
            if 0xE0 <= first < 0xF0
            else 4
            if 0xF0 <= first < 0xF5
            else 0
        )
        if not length:
            continue
        data = bytes([first, *rng.integers(256, size=length - 1).tolist()])
        try:
            character = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if character not in known:
            return character
