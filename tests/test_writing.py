"""What a model writes: copying of the training text, looping, language, length (models/writing.py)."""

import random

import numpy as np
import pytest

from mlproject.data import word_ngrams
from mlproject.models.writing import longest_repeat, words, writing_figures
from tests.conftest import SAMPLE_CORPUS

TRAINING_TEXT = "\n\n".join(p.strip() for p in SAMPLE_CORPUS.read_text(encoding="utf-8").split("%") if p.strip())


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("ngrams") / "word_8grams.npy"
    distinct = word_ngrams.build(TRAINING_TEXT, path)
    assert distinct > 1000
    return word_ngrams.load(path)


def spans_of_the_training_text(count: int, characters: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    starts = [rng.randrange(len(TRAINING_TEXT) - characters) for _ in range(count)]
    # whole words only: a span cut inside a word starts or ends with a word the text does not have
    return [" ".join(TRAINING_TEXT[s : s + characters].split()[1:-1]) for s in starts]


def test_a_model_that_returns_its_training_text_copies_everything(index):
    figures = writing_figures(spans_of_the_training_text(6, 300, seed=0), index, ["es"])
    assert figures["copy_share"] == 1.0
    assert figures["language_share"] == 1.0
    assert figures["samples"] == 6


def test_the_same_words_shuffled_copy_almost_nothing(index):
    rng = random.Random(1)
    texts = []
    for span in spans_of_the_training_text(6, 300, seed=0):
        shuffled = span.split()
        rng.shuffle(shuffled)
        texts.append(" ".join(shuffled))
    figures = writing_figures(texts, index, ["es"])
    assert figures["copy_share"] < 0.02
    assert figures["distinct_2"] > 0.9


def test_a_loop_on_one_phrase_shows_in_repeat_share_and_distinct_2(index):
    loop = "La vida es la vida en la vida. " * 8
    varied = spans_of_the_training_text(2, 240, seed=3)
    looping, writing = writing_figures([loop, loop], index, ["es"]), writing_figures(varied, index, ["es"])
    assert looping["repeat_share"] > 0.85 and writing["repeat_share"] < 0.3
    assert looping["distinct_2"] < 0.2 < writing["distinct_2"]
    assert looping["mean_length"] == len(loop)


def test_another_language_and_unmeasurable_figures_say_so(index):
    english = ["The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun."]
    assert writing_figures(english, index, ["es"])["language_share"] == 0.0
    short = writing_figures(["Dos palabras"], index, [])
    assert short["copy_share"] is None and short["language_share"] is None and short["distinct_2"] == 1.0
    assert "n/a of word 8-grams copied" in words(short)
    assert writing_figures([], index, ["es"])["repeat_share"] is None


def test_longest_repeat_against_every_pair_of_starts():
    def by_every_pair(text: str) -> int:
        best = 0
        for i in range(len(text)):
            for j in range(i + 1, len(text)):
                common = 0
                while j + common < len(text) and text[i + common] == text[j + common]:
                    common += 1
                best = max(best, common)
        return best

    rng = random.Random(7)
    for _ in range(200):
        text = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 40)))
        assert longest_repeat(text) == by_every_pair(text), text
    assert longest_repeat("abababa") == 5


def test_ngram_hashes_are_stable_and_positional():
    first = word_ngrams.ngram_hashes("uno dos tres cuatro cinco seis siete ocho nueve")
    assert first.size == 2 and first.dtype == np.uint64
    assert np.array_equal(first, word_ngrams.ngram_hashes("uno  dos\ntres cuatro cinco seis siete ocho nueve"))
    assert word_ngrams.ngram_hashes("dos uno tres cuatro cinco seis siete ocho")[0] != first[0]  # same words
    last_changed = word_ngrams.ngram_hashes("uno dos tres cuatro cinco seis siete ocho diez")
    assert last_changed[0] == first[0] and last_changed[1] != first[1]
    assert word_ngrams.ngram_hashes("siete palabras no bastan para un octograma").size == 0
