"""Tokenize stage: a vocabulary and a deterministic train/validation split by document.

A document goes to validation by a hash of its text, not by its position in the file, so adding
or reordering documents never moves the others between the two sides. A token outside the
vocabulary is `<unk>` to the network and spelled by the vocabulary's speller (speller.py), which
learns from the training text's own rare tokens.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlproject.config import ConfigError, Paths, TokenizeConfig
from mlproject.data.speller import Speller
from mlproject.fileio import atomic_path, read_json, read_jsonl, write_json, write_text

UNKNOWN = "<unk>"
# A word or punctuation mark with the whitespace before it, or trailing whitespace: joining the
# tokens gives the text back, and a count of tokens is a count of words and marks.
WORD_PATTERN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


@dataclass(frozen=True)
class Vocabulary:
    level: str
    tokens: tuple[str, ...]  # tokens[0] is UNKNOWN
    # Spells what UNKNOWN stands for; without one (a vocabulary saved before spellers), by bytes alone.
    speller: Speller | None = None

    def __post_init__(self):
        if self.speller is None:
            object.__setattr__(self, "speller", Speller(whole_token=self.level != "char"))

    def split(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else WORD_PATTERN.findall(text)

    def encode(self, text: str) -> np.ndarray:
        index = {token: i for i, token in enumerate(self.tokens)}
        return np.array([index.get(t, 0) for t in self.split(text)], dtype=np.int32)

    def decode(self, ids, spelled: list[str] | None = None) -> str:
        """The text of `ids`; each UNKNOWN is the next of `spelled` (what it stood for, or what
        the speller wrote for it). Without `spelled`, UNKNOWN is written as itself."""
        spelled = iter(spelled or [])
        return "".join(next(spelled, UNKNOWN) if i == 0 else self.tokens[int(i)] for i in ids)

    def unknown_pieces(self, text: str) -> list[tuple[int, str]]:
        """(position, text) of each token of `text` outside the vocabulary."""
        return [(k, piece) for k, (piece, i) in enumerate(zip(self.split(text), self.encode(text))) if i == 0]

    def round_trip(self, text: str) -> str:
        """The text that the tokens of `text` stand for, each UNKNOWN spelled out: `text` itself
        when every character falls in one token."""
        return self.decode(self.encode(text), [piece for _, piece in self.unknown_pieces(text)])

    def spell_unknown(self, ids, seed: int) -> str:
        """The text of generated `ids`, each UNKNOWN a token the speller draws (seeded per row)."""
        rng = np.random.default_rng(seed)
        return self.decode(ids, [self.speller.sample(rng) for i in ids if i == 0])

    def to_json(self) -> str:
        return json.dumps(
            {"level": self.level, "tokens": list(self.tokens), "speller": self.speller.to_dict()}, ensure_ascii=False
        )

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        speller = Speller.from_dict(data["speller"]) if "speller" in data else None
        return cls(level=data["level"], tokens=tuple(data["tokens"]), speller=speller)

    def __len__(self) -> int:
        return len(self.tokens)


def build_vocabulary(text: str, level: str, max_vocab: int, min_count: int) -> Vocabulary:
    """Tokens seen at least `min_count` times, the commonest `max_vocab - 1`, plus UNKNOWN, and a
    speller learnt from every occurrence of the tokens left out."""
    probe = Vocabulary(level, (UNKNOWN,))
    pieces = probe.split(text)
    counts = Counter(pieces)
    kept = [t for t, n in counts.most_common() if n >= min_count][: max_vocab - 1]
    left_out = set(counts) - set(kept)
    speller = Speller.fit((p for p in pieces if p in left_out), whole_token=level != "char")
    return Vocabulary(level, (UNKNOWN, *sorted(kept)), speller)


def in_validation(document: dict, fraction: float) -> bool:
    """A stable coin flip from the document's content hash."""
    return int(document["sha256"][:15], 16) / 16**15 < fraction


def split_by_document(documents: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    validation = [d for d in documents if in_validation(d, fraction)]
    training = [d for d in documents if not in_validation(d, fraction)]
    return training, validation


VALIDATION_DOCUMENTS = "validation_documents.json"


def tokenize(config: TokenizeConfig, paths: Paths) -> dict:
    """Write vocab.json, train.npy, train.txt, validation.txt and where each of its documents starts
    (VALIDATION_DOCUMENTS) into `paths.tokens`, and the training text's word n-grams into
    `paths.word_ngrams` (outside it: the train stage does not read them); return a summary."""
    from mlproject.data import word_ngrams

    documents = read_jsonl(paths.accepted_documents)
    training, validation = split_by_document(documents, config.validation_fraction)
    if not training or not validation:
        raise ConfigError(
            f"tokenize.validation_fraction = {config.validation_fraction}: {len(training)} training "
            f"and {len(validation)} validation documents of {len(documents)}; expected both sides non-empty"
        )
    train_text = config.document_separator.join(d["text"] for d in training)
    validation_text = config.document_separator.join(d["text"] for d in validation)
    vocabulary = build_vocabulary(train_text, config.level, config.max_vocab, config.min_count)
    train_ids = vocabulary.encode(train_text)
    out = Path(paths.tokens)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "vocab.json", vocabulary.to_json())
    with atomic_path(out / "train.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, train_ids)
    write_text(out / "train.txt", train_text)  # the kinds with their own tokenizer read the text
    write_text(out / "validation.txt", validation_text)
    # Where each validation document starts: the figures of a model pair up with another's by document.
    lengths = [len(d["text"]) + len(config.document_separator) for d in validation[:-1]]
    write_json(out / VALIDATION_DOCUMENTS, {"starts": np.cumsum([0, *lengths]).tolist()})
    summary = {
        "level": config.level,
        "vocabulary": len(vocabulary),
        "separator": config.document_separator,
        "training_documents": len(training),
        "validation_documents": len(validation),
        "training_tokens": int(train_ids.size),
        "validation_characters": len(validation_text),
        "unknown_training_tokens": int((train_ids == 0).sum()),
        "training_word_ngrams": word_ngrams.build(train_text, paths.word_ngrams),
    }
    write_json(out / "summary.json", summary)
    return summary


def read_separator(tokens: Path) -> str:
    """The text the tokenize stage put between documents."""
    return read_json(Path(tokens) / "summary.json").get("separator", "\n\n")
