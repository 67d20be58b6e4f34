"""The speller behind <unk>: a true probability over strings (never more than 1 in all), fitted on
the rare tokens, saved with the vocabulary, and drawing tokens for generation."""

import itertools
import math
import sys

import numpy as np
import pytest

from mlproject.data.speller import Speller, byte_cost
from mlproject.data.tokens import UNKNOWN, Vocabulary, build_vocabulary

WORDS = [" gato", " gata", " pato", " plato", " trato", "\n\nGato", " ató"]


def test_the_probabilities_of_all_strings_up_to_a_length_sum_to_at_most_one():
    short = [" ab", " ba", " a", "b", " aab", " a"]
    speller = Speller.fit(short * 3, whole_token=True, order=3)
    alphabet = [" ", "a", "b", "z", "€", "😀"]  # and three it never saw, of 1, 3 and 4 bytes
    total = sum(math.exp(-speller.nats("".join(s))) for n in range(6) for s in itertools.product(alphabet, repeat=n))
    assert total <= 1.0
    assert total > 0.5  # most of its mass is on short strings of the letters it learnt


def test_each_next_symbol_distribution_sums_to_one_with_what_unseen_characters_get():
    from mlproject.data.speller import ALL_CHARACTERS_MASS, END, END_BASE

    speller = Speller.fit(WORDS, whole_token=True, order=3)
    seen = sorted({s for followers in speller.counts.values() for s in followers} - {END})
    for context in ["", "at", "\x02\x02", "zz"]:
        known = sum(speller.probability(context, s) for s in seen + [END])
        unseen = speller.base_share(context) * (ALL_CHARACTERS_MASS - sum(byte_cost(c) for c in seen))
        # What stays unused is the base's own: END_BASE where END was seen, and 1 - ALL_CHARACTERS_MASS.
        assert known + unseen == pytest.approx(1 - speller.base_share(context) * (1 - ALL_CHARACTERS_MASS - END_BASE))
        assert known + unseen <= 1


def test_a_char_level_speller_spells_exactly_one_character_and_sums_to_at_most_one():
    speller = Speller.fit(list("ñññáé"), whole_token=False)
    total = sum(math.exp(-speller.nats(chr(c))) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert total <= 1.0 and total > 0.5
    assert speller.nats("ñ") < speller.nats("é") < speller.nats("q")  # seen more, seen less, never seen
    rng = np.random.default_rng(1)
    assert all(len(speller.sample(rng)) == 1 for _ in range(200))


def test_an_unfitted_speller_pays_for_every_byte():
    speller = Speller(whole_token=False)
    assert speller.nats("a") == pytest.approx(math.log(256))
    assert speller.nats("😀") == pytest.approx(4 * math.log(256))


def test_samples_are_seeded_words_never_the_unknown_mark():
    speller = Speller.fit(WORDS * 5, whole_token=True)
    first = [speller.sample(np.random.default_rng(7)) for _ in range(3)]
    assert first == [speller.sample(np.random.default_rng(7)) for _ in range(3)]
    drawn = [speller.sample(np.random.default_rng(seed)) for seed in range(300)]
    assert UNKNOWN not in drawn and all(drawn)
    assert sum(word in WORDS for word in drawn) > 100  # what it learnt, mostly
    assert len(set(drawn)) > len(WORDS)  # and words it never saw


def test_the_vocabulary_fits_its_speller_on_the_tokens_it_leaves_out_and_saves_it(tmp_path):
    text = "el gato y el pato y el plato, el trato"
    vocabulary = build_vocabulary(text, "word", 100, min_count=2)
    assert set(vocabulary.tokens) == {UNKNOWN, " el", " y"}
    assert " gato" not in vocabulary.tokens and speller_knows(vocabulary.speller, " gato")
    (tmp_path / "vocab.json").write_text(vocabulary.to_json(), encoding="utf-8")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded.speller.nats(" gato") == vocabulary.speller.nats(" gato")
    assert loaded.round_trip("el zorro 😀\ty\t el") == "el zorro 😀\ty\t el"


def test_a_vocabulary_saved_before_spellers_spells_by_bytes(tmp_path):
    (tmp_path / "vocab.json").write_text('{"level": "char", "tokens": ["<unk>", "a"]}', encoding="utf-8")
    vocabulary = Vocabulary.load(tmp_path / "vocab.json")
    assert vocabulary.speller.nats("é") == pytest.approx(math.log(256) * 2)
    assert vocabulary.spell_unknown([1, 0, 1], seed=3)[1] != UNKNOWN


def speller_knows(speller: Speller, word: str) -> bool:
    return speller.nats(word) < sum(-math.log(byte_cost(c)) for c in word) / 2
