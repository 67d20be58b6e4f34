"""What a model writes, measured on the evaluate stage's samples: perplexity cannot see a model that
copies its corpus verbatim or loops on one phrase, these figures do.

- copy_share: the share of the samples' word 8-grams found verbatim in the training text;
- distinct_2: distinct word pairs over all word pairs of the samples (1.0: no pair twice);
- repeat_share: the longest span of characters a sample repeats (overlapping itself allowed),
  as a share of that sample's length, averaged over the samples; a loop on one phrase nears 1;
- language_share: the share of samples identified as a corpus language (validate.language);
- mean_length: characters generated per sample.

Only the generated text counts, not the prompt.
"""

from __future__ import annotations

import numpy as np


def longest_repeat(text: str) -> int:
    """Characters in the longest span that occurs at least twice in the text (the occurrences may
    overlap: "abababa" repeats "ababa")."""
    suffixes = sorted(range(len(text)), key=lambda start: text[start:])
    longest = 0
    for a, b in zip(suffixes, suffixes[1:]):
        low, high = longest, len(text) - max(a, b)  # only a longer common start matters
        if text[a : a + low + 1] != text[b : b + low + 1]:
            continue
        while low < high:  # the longest common start, by halves: slices compare at C speed
            middle = (low + high + 1) // 2
            low, high = (middle, high) if text[a : a + middle] == text[b : b + middle] else (low, middle - 1)
        longest = low
    return longest


def distinct_pairs(texts: list[str]) -> tuple[int, int]:
    pairs = [pair for text in texts for pair in zip(text.split(), text.split()[1:])]
    return len(set(pairs)), len(pairs)


def writing_figures(texts: list[str], index: np.ndarray, languages: list[str]) -> dict:
    """The figures of the module docstring for these generated texts; a figure the texts cannot
    give (no 8 words in a row, no word pair, no language to check) is None."""
    from mlproject.data import word_ngrams
    from mlproject.data.language import identify

    counts = [word_ngrams.found(text, index) for text in texts]
    copied, ngrams = sum(c for c, _ in counts), sum(n for _, n in counts)
    distinct, pairs = distinct_pairs(texts)
    written = [t for t in texts if t.strip()]
    in_language = [identify(" ".join(t.split()))[0] in languages for t in written] if languages else []
    return {
        "samples": len(texts),
        "copy_share": copied / ngrams if ngrams else None,
        "distinct_2": distinct / pairs if pairs else None,
        "repeat_share": float(np.mean([longest_repeat(t) / len(t) for t in written])) if written else None,
        "language_share": float(np.mean(in_language)) if in_language else None,
        "mean_length": float(np.mean([len(t) for t in texts])) if texts else 0.0,
    }


def words(figures: dict) -> str:
    """One line for the model card and the stage's output."""

    def share(key: str) -> str:
        return "n/a" if figures.get(key) is None else f"{figures[key]:.1%}"

    distinct = "n/a" if figures.get("distinct_2") is None else f"{figures['distinct_2']:.3f}"
    return (
        f"{share('copy_share')} of word 8-grams copied from the training text, distinct-2 {distinct}, "
        f"longest repeat {share('repeat_share')} of a sample, {share('language_share')} in the corpus language, "
        f"{figures.get('mean_length', 0):.0f} characters per sample ({figures.get('samples', 0)} samples)"
    )
