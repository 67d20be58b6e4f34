"""Each preset of the classic notebook models applies cleanly and trains, shrunk to seconds."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from mlproject.config import load_params
from mlproject.data.scrape import scrape
from mlproject.data.tokens import tokenize
from mlproject.models import kinds
from mlproject.params_file import apply_preset
from mlproject.stages.evaluate import evaluate
from tests.conftest import ROOT, paths_in, tiny_params, write_params

PRESETS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))


def test_presets_reproduce_the_seed_models():
    assert {
        "default",
        "tf-tutorial",
        "chollet-lstm",
        "lyrics-words",
        "smollm2-finetune",
        "bloom-560m-finetune",
        "gpt-from-scratch",
    } <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_applies_and_trains(tmp_path, name, tiny_base):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    changed = apply_preset(tmp_path / "params.yaml", ROOT / "presets" / f"{name}.yaml")
    params = load_params(tmp_path / "params.yaml")
    assert "# reaches Python, NumPy, TensorFlow and torch" in (tmp_path / "params.yaml").read_text()
    if name != "default":
        assert changed

    sample = load_params(write_params(tmp_path, tiny_params(tmp_path)))
    layout = paths_in(tmp_path, accepted_documents=params.paths.raw_documents)
    scrape(sample.scrape, layout)
    tokenize(params.tokenize, layout)
    quick = dataclasses.replace(params.train.settings(), epochs=1, max_steps_per_epoch=2, batch_size=2)
    if quick.kind == "finetune":  # the same training from a small local base: no hub, no 135M here
        quick = dataclasses.replace(quick, base_model=str(tiny_base))  # (tests/test_smollm2.py: the real one)
    kinds.kind_class(quick.kind).train(quick, 1, layout)
    short = dataclasses.replace(params.evaluate, sample_length=5, streams=4)
    metrics, samples = evaluate(short, 1, layout)
    level = params.tokenize.level if quick.kind in ("rnn", "window_rnn") else "subword"
    assert 0 < metrics["bits_per_byte"] < 30 and metrics["level"] == level
    assert len(samples) == len(short.sample_prompts) * len(short.temperatures)
    assert json.loads(Path(layout.metrics).read_text())["tokens"] > 0


def test_corpus_preset_merges_nested_params_and_stays_readable_yaml(tmp_path):
    import yaml

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_preset(tmp_path / "params.yaml", ROOT / "presets" / "debian-reference-crawl.yaml")
    from ruamel.yaml import YAML

    text = (tmp_path / "params.yaml").read_text()
    raw = yaml.safe_load(text)
    assert YAML(typ="safe").load(text) == raw  # DVC reads params.yaml with ruamel (YAML 1.2)
    assert raw["scrape"]["sources"][0]["seeds"] == ["http://127.0.0.1:8765/index.es.html"]
    assert raw["scrape"]["http"]["delay_seconds"] == 0.2
    assert raw["scrape"]["http"]["max_retries"] == 3  # the keys the preset does not name stay
    assert raw["train"]["rnn"]["cell"] == "gru"
