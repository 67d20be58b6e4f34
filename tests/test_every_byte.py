"""Every kind's bits per byte are the cost of every byte of the text: its tokens give the text
back, no token is skipped, and a word model pays for the words it maps to <unk>."""

import dataclasses
import math

import numpy as np
import pytest

from mlproject.config import EvaluateConfig, StageFailed
from mlproject.data.tokens import build_vocabulary
from mlproject.models import kinds
from mlproject.models.evaluation import NotEveryByte, check_every_byte, document_scores
from mlproject.models.interface import Sampling
from mlproject.models.keras_rnn.network import build_network, set_seed
from mlproject.models.settings import settings_class
from mlproject.models.transformers_lm.gpt import ScratchGPT
from tests.test_transformers import TINY_GPT

TRAINING = "Más vale pájaro en mano que ciento volando.\n\nA buen entendedor, pocas palabras.\n\n" * 3
# Characters no vocabulary above has seen, emoji, tabs, runs of mixed whitespace, CRLF.
HARD = "Tab\tafter,  two spaces \t\n\n\nthree newlines 😀🇪🇸 ǅ 中文\r\n¿qué? ñandú\u00a0\u200bend "


def keras_model(kind: str, level: str, min_count: int = 1, text: str = TRAINING):
    set_seed(3)
    config = settings_class(kind)(kind=kind, units=16, embedding_dim=8, sequence_length=6)
    vocabulary = build_vocabulary(text, level, 1000, min_count)
    return kinds.kind_class(kind)(build_network(config, len(vocabulary)), vocabulary, config)


@pytest.mark.parametrize("kind", ["rnn", "window_rnn"])
@pytest.mark.parametrize("level", ["char", "word"])
def test_the_keras_kinds_pay_for_every_byte_of_unseen_text(kind, level):
    model = keras_model(kind, level)
    totals = model.score(HARD, EvaluateConfig(streams=4, chunk_length=8))
    check_every_byte(kind, HARD, model.round_trip(HARD), totals)  # raises if the tokens lose text or any is unscored
    assert model.round_trip(HARD) == HARD
    assert (totals.characters, totals.bytes) == (len(HARD), len(HARD.encode("utf-8")))
    assert 0 < totals.spelled_bytes < totals.bytes  # the unseen characters (and words) are spelled
    assert math.isfinite(totals.nll_nats) and totals.figures()["vocabulary_byte_coverage"] < 1


def test_a_gpt_from_scratch_pays_for_every_byte_of_unseen_text(corpus):
    model = ScratchGPT.initial(dataclasses.replace(TINY_GPT, sequence_length=256), 1, corpus / "tokens")
    totals = model.score(HARD, EvaluateConfig(window=64, stride=32))
    check_every_byte("gpt", HARD, model.round_trip(HARD), totals)
    assert totals.spelled_bytes == 0 and totals.figures()["vocabulary_byte_coverage"] == 1  # byte-level BPE


def test_a_tokenizer_that_loses_text_or_a_score_that_skips_it_is_refused():
    model = keras_model("rnn", "char")
    totals = model.score(HARD, EvaluateConfig())
    with pytest.raises(NotEveryByte, match="do not give the validation text back .*'😀"):
        check_every_byte("rnn", HARD, HARD.replace("😀", "?"), totals)
    skipped = dataclasses.replace(totals, characters=totals.characters - 1, bytes=totals.bytes - 1)
    size = len(HARD.encode("utf-8"))
    with pytest.raises(NotEveryByte, match=f"scored {size - 1} of the {size} bytes"):
        check_every_byte("rnn", HARD, HARD, skipped)


def test_a_score_whose_token_costs_miss_their_total_is_refused():
    model = keras_model("rnn", "word")
    totals = model.score(HARD, EvaluateConfig())
    short = dataclasses.replace(totals, token_costs=totals.token_costs[:-1])
    with pytest.raises(NotEveryByte, match="gave no cost and place for each of its"):
        check_every_byte("rnn", HARD, HARD, short)
    cheaper = dataclasses.replace(totals, token_costs=totals.token_costs * 0.5)
    with pytest.raises(NotEveryByte, match="token costs sum to"):
        check_every_byte("rnn", HARD, HARD, cheaper)


def every_kind(corpus):
    for kind in ("rnn", "window_rnn"):
        for level in ("char", "word"):
            yield f"{kind} {level}", keras_model(kind, level), EvaluateConfig(streams=4, chunk_length=8)
    gpt = ScratchGPT.initial(dataclasses.replace(TINY_GPT, sequence_length=256), 1, corpus / "tokens")
    yield "gpt", gpt, EvaluateConfig(window=64, stride=32)


def test_every_kind_splits_its_cost_by_document_summing_to_its_totals(corpus):
    documents = ["Más vale pájaro en mano.", "Tab\tafter,  two 😀🇪🇸 ǅ 中文\r\n", "¿qué? ñandú\u00a0end "]
    text = "\n\n".join(documents)
    starts = np.cumsum([0] + [len(d) + 2 for d in documents[:-1]])
    for name, model, config in every_kind(corpus):
        totals = model.score(text, config)
        figures = validation_figures_of(text, name, totals)
        scores = document_scores(text, starts, totals, figures)
        assert len(scores["nats"]) == 3 and all(n > 0 for n in scores["nats"]), name
        assert sum(scores["nats"]) == pytest.approx(totals.nll_nats, rel=1e-9), name
        assert sum(scores["bytes"]) == len(text.encode("utf-8")) and sum(scores["characters"]) == len(text)
        assert scores["bytes"][1] == len((documents[1] + "\n\n").encode("utf-8"))  # its separator after it
    with pytest.raises(StageFailed, match="do not fit validation.txt"):
        document_scores(text, np.array([0, len(text) + 5]), totals, figures)


def validation_figures_of(text: str, kind: str, totals) -> dict:
    check_every_byte(kind, text, text, totals)
    return {"validation_md5": "md5", "score_rule": "every-byte"}


def random_words(count: int, seed: int = 0) -> str:
    """Words of 6 letters drawn uniformly from 8, one space before each: 18 bits a word, 7 bytes."""
    rng = np.random.default_rng(seed)
    return "".join(" " + "".join(rng.choice(list("abcdefgh"), 6)) for _ in range(count))


def test_a_word_model_cannot_beat_the_entropy_of_rare_words_by_mapping_them_to_unk():
    training, validation = random_words(600, seed=1), random_words(200, seed=2)
    model = keras_model("rnn", "word", min_count=2, text=training)  # every word is rare: all <unk>
    assert len(model.vocabulary) <= 3  # <unk> and the odd word drawn twice
    logits = model.network.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([np.zeros_like(kernel), bias + np.eye(len(bias))[0] * 50.0])  # P(<unk>) = 1
    totals = model.score(validation, EvaluateConfig())
    entropy = 18 / 7  # bits per byte that no model of this text can beat on average
    assert totals.figures()["bits_per_byte"] > 0.95 * entropy
    # Before the speller, <unk> alone was the price of each word: almost nothing.
    unk_only = totals.nll_nats - sum(model.vocabulary.speller.nats(w) for w in model.vocabulary.split(validation))
    assert unk_only / totals.bytes / math.log(2) < 0.01


def test_a_generated_unk_is_a_word_the_speller_writes_never_the_mark():
    training = random_words(300, seed=1)
    model = keras_model("window_rnn", "word", min_count=2, text=training + " el el el")
    logits = model.network.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([np.zeros_like(kernel), bias + np.eye(len(bias))[0] * 50.0])
    texts = model.generate(["el", "el el"], Sampling(max_length=5, seed=4))
    assert all("<unk>" not in text for text in texts)
    words = [w for text in texts for w in text.split()]
    assert len(words) >= 8 and all(w.isalpha() for w in words)
    assert texts == model.generate(["el", "el el"], Sampling(max_length=5, seed=4))


def test_a_model_whose_speller_learnt_nothing_never_draws_unk():
    """A vocabulary saved before spellers (or with no rare token) would spell noise: <unk> is blocked."""
    model = keras_model("rnn", "word", min_count=1, text=TRAINING)
    assert not model.vocabulary.speller.fitted
    logits = model.network.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel, bias + np.eye(len(bias))[0] * 50.0])  # <unk> by far the likeliest
    primes = [model.vocabulary.encode(model.separator + prompt) for prompt in ["Más", "A buen"]]
    ids = model.sample(primes, Sampling(max_length=6, seed=2), seeds=[1, 2])
    assert ids.shape == (2, 6) and (ids > 0).all()
