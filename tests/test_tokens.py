"""Tokenization is lossless and the split is by document hash, not file order."""

import numpy as np

from mlproject.config import TokenizeConfig
from mlproject.data.tokens import Vocabulary, build_vocabulary, split_by_document, tokenize
from mlproject.fileio import write_jsonl
from tests.conftest import paths_in


def documents(n):
    import hashlib

    texts = [f"Documento {i}: más vale tarde que nunca." for i in range(n)]
    return [{"id": str(i), "text": t, "sha256": hashlib.sha256(t.encode()).hexdigest()} for i, t in enumerate(texts)]


def test_split_does_not_depend_on_order():
    docs = documents(200)
    _, validation = split_by_document(docs, 0.2)
    _, validation_reversed = split_by_document(list(reversed(docs)), 0.2)
    assert {d["id"] for d in validation} == {d["id"] for d in validation_reversed}
    assert 20 < len(validation) < 60


def test_word_level_round_trips_text():
    text = "¿Quién  sabe?\nA buen entendedor, pocas palabras."
    vocabulary = build_vocabulary(text, "word", 100, 1)
    assert vocabulary.decode(vocabulary.encode(text)) == text
    assert " entendedor" in vocabulary.tokens and "¿" in vocabulary.tokens


def test_unknown_characters_map_to_unk():
    vocabulary = build_vocabulary("abc", "char", 100, 1)
    assert list(vocabulary.encode("abz")) == [vocabulary.tokens.index("a"), vocabulary.tokens.index("b"), 0]


def test_tokenize_writes_vocabulary_ids_and_validation_text(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", documents(100))
    summary = tokenize(
        TokenizeConfig(validation_fraction=0.2), paths_in(tmp_path, accepted_documents="docs.jsonl", tokens="tok")
    )
    vocabulary = Vocabulary.load(tmp_path / "tok" / "vocab.json")
    ids = np.load(tmp_path / "tok" / "train.npy")
    assert summary["training_documents"] + summary["validation_documents"] == 100
    assert ids.size == summary["training_tokens"] and (ids > 0).all()
    assert "Documento" in (tmp_path / "tok" / "validation.txt").read_text()
    assert len(vocabulary) == summary["vocabulary"]
