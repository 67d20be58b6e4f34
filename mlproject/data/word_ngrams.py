"""The word n-grams of the training text, as a sorted array of 64-bit hashes: what a generated text
is checked against for copying. The tokenize stage builds it once per corpus; evaluate reads it.

Words are the text split at whitespace, exactly as written (case and punctuation kept): a copied
n-gram is one found verbatim. Hashes are stable across processes and machines (BLAKE2b per word,
then a polynomial over the n words); two different n-grams share one with a chance of about one in
2^64 per pair, far below anything a share of thousands of n-grams shows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mlproject.fileio import atomic_path

N = 8  # words per n-gram: long enough that a shared one is copied, not common phrasing
MULTIPLIER = np.uint64(0x100000001B3)  # odd, so the polynomial keeps every bit of each word's hash


def word_hashes(words: list[str]) -> np.ndarray:
    by_word = {w: int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") for w in set(words)}
    return np.fromiter((by_word[w] for w in words), dtype=np.uint64, count=len(words))


def ngram_hashes(text: str, n: int = N) -> np.ndarray:
    """One hash per run of n consecutive words of the text (none when it has fewer)."""
    hashes = word_hashes(text.split())
    count = len(hashes) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    combined = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64 is the point
        for offset in range(n):
            combined = combined * MULTIPLIER + hashes[offset : offset + count]
    return combined


def build(text: str, path: str | Path) -> int:
    """Write the index of the text's n-grams; returns how many distinct ones it holds."""
    index = np.unique(ngram_hashes(text))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, index)
    return int(index.size)


def load(path: str | Path) -> np.ndarray:
    return np.load(path)


def found(text: str, index: np.ndarray) -> tuple[int, int]:
    """How many of the text's n-grams are in the index, of how many it has."""
    hashes = ngram_hashes(text)
    if hashes.size == 0 or index.size == 0:
        return 0, int(hashes.size)
    at = np.minimum(np.searchsorted(index, hashes), index.size - 1)
    return int((index[at] == hashes).sum()), int(hashes.size)
