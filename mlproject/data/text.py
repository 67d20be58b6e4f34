"""Text measures shared by scrape (duplicates) and validate (quality expectations)."""

from __future__ import annotations

import re
import unicodedata

# Letters of each corpus language; digits, punctuation and whitespace are allowed in every one.
ALPHABETS = {
    "es": "abcdefghijklmnopqrstuvwxyzáéíóúüñ",
    "en": "abcdefghijklmnopqrstuvwxyz",
}
COMMON = set("0123456789 \t\n.,;:¡!¿?'\"()[]-–—…«»“”‘’/%&*+=#@$€ºª°")


def normalise(text: str) -> str:
    """Text compared for duplicates: Unicode NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def foreign_share(text: str, languages: list[str]) -> float:
    """Share of characters outside the languages' alphabets (case-folded) and common marks; 0 when
    a language's alphabet is not listed here."""
    if not text or not languages or any(language not in ALPHABETS for language in languages):
        return 0.0
    allowed = set("".join(ALPHABETS[language] for language in languages)) | COMMON
    folded = unicodedata.normalize("NFC", text).casefold()
    return sum(ch not in allowed for ch in folded) / len(folded)


MARKUP = re.compile(
    r"</?(?:html|head|body|div|span|p|a|script|style|br|table|tr|td|li|ul|ol|img|nav|"
    r"footer|header|iframe|form|input|button)\b[^>]*>|&(?:nbsp|amp|lt|gt|quot|#\d+);",
    re.IGNORECASE,
)


def markup_per_1000_chars(text: str) -> float:
    """HTML tags and entities per 1,000 characters: many in extraction residue, a few in a text
    that shows them (a manual listing XML's entities)."""
    return 1000 * len(MARKUP.findall(text)) / len(text) if text else 0.0


BOILERPLATE = [
    r"(?i)\b(?:we use|this (?:web)?site uses) cookies\b",
    r"(?i)\baccept (?:all )?cookies\b",
    r"(?i)\bcookie (?:policy|settings|preferences)\b",
    r"(?i)\b(?:utilizamos|usamos) cookies\b",
    r"(?i)\b(?:aceptar|acepto) (?:las |todas las )?cookies\b",
    r"(?i)pol[ií]tica de cookies",
    r"(?i)\bskip to (?:main )?content\b",
    r"(?i)\bsaltar al contenido\b",
    r"(?i)\bsubscribe to our newsletter\b",
    r"(?i)\bsuscr[ií]bete a nuestro bolet[ií]n\b",
    r"(?i)^\s*(?:home|inicio)\s*[|›>»]\s*\w+",
]
