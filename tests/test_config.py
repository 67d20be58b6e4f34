"""Params are validated once, with an error that names the key and what is expected."""

import re

import pytest
import yaml

from mlproject.config import ConfigError, load_params, params_from_dict
from tests.conftest import ROOT


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.train.settings().cell == "gru" and params.scrape.sources[0].name == "fortunes-es"
    for kind in ("rnn", "window_rnn", "finetune", "gpt"):  # every kind's section in the shipped file
        raw = default_params()
        raw["train"]["kind"] = kind
        assert params_from_dict(raw).train.settings().kind == kind


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "epochs", -1, "train.epochs = -1: expected a value >= 1"),
        ("train", "kind", "bert", "train.kind = 'bert': expected one of rnn, window_rnn, finetune, gpt"),
        ("train", "patience", -1, "train.patience = -1: expected a value >= 0"),
        ("train", "epochs", "ten", "train.epochs = 'ten': expected int"),
        ("train", "learning_rat", 0.1, "train.learning_rat: unknown param"),
        ("tokenize", "level", "byte", "tokenize.level = 'byte': expected one of char, word"),
        ("validate", "language", "Spanish", "validate.language = 'Spanish': expected an ISO 639 code"),
        ("validate", "language", [], "validate.language = []: expected an ISO 639 code"),
        ("validate", "language", 3, "validate.language = 3: expected str | list"),
        ("generate", "top_p", 1.5, "generate.top_p = 1.5: expected a value <= 1.0"),
        ("generate", "top_p", 0.0, "generate.top_p = 0.0: expected a value > 0.0"),
        ("generate", "temperature", float("nan"), "generate.temperature = nan: expected a finite number"),
        ("generate", "temperature", -0.5, "generate.temperature = -0.5: expected a value >= 0.0"),
        ("train", "learning_rate", float("nan"), "train.learning_rate = nan: expected a finite number"),
        ("evaluate", "temperatures", [0.5, float("inf")], "evaluate.temperatures[1] = inf: expected a finite number"),
    ],
)
def test_invalid_param_names_key_and_expectation(section, key, value, message):
    raw = default_params()
    raw[section][key] = value
    with pytest.raises(ConfigError) as error:
        params_from_dict(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="trian: unknown params section"):
        params_from_dict({**default_params(), "trian": {}})


def test_a_selector_that_is_not_css_is_named():
    raw = default_params()
    raw["scrape"]["sources"] = [{"name": "web", "kind": "url", "location": "http://127.0.0.1/", "selector": "div["}]
    with pytest.raises(ConfigError, match=r"scrape.sources\[0\].selector = 'div\[': not a CSS selector"):
        params_from_dict(raw)


@pytest.mark.parametrize(
    "kind, key, value, message",
    [
        ("rnn", "cell", "transformer", "train.rnn.cell = 'transformer': expected one of gru, lstm"),
        ("rnn", "heads", 4, "train.rnn.heads: unknown param for kind rnn; known: cell, "),
        ("rnn", "epochs", 4, "train.rnn.epochs: unknown param for kind rnn; it is a shared key: train.epochs"),
        ("window_rnn", "target", "all", "train.window_rnn.target = 'all': expected one of last"),
        ("gpt", "heads", 3, "train.gpt.embedding_dim = 256: expected a multiple of train.gpt.heads (3)"),
        ("finetune", "lora_alpha", 0, "train.finetune.lora_alpha = 0.0: expected a value > 0.0"),
    ],
)
def test_a_kinds_own_settings_are_checked_by_its_class_naming_the_key(kind, key, value, message):
    raw = default_params()
    raw["train"]["kind"] = kind
    raw["train"][kind][key] = value
    with pytest.raises(ConfigError) as error:
        params_from_dict(raw).train.settings()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_another_kinds_settings_are_not_read():
    raw = default_params()
    raw["train"]["gpt"]["heads"] = 3  # wrong for gpt, but the kind is rnn
    assert params_from_dict(raw).train.settings().units == 256


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("units", 128, "train.units: moved to train.rnn.units (and train.window_rnn.units)"),
        ("heads", 8, "train.heads: moved to train.gpt.heads; each kind's own settings"),
        ("lora_rank", 8, "train.lora_rank: moved to train.finetune.lora_rank"),
    ],
)
def test_a_flat_key_of_the_old_layout_says_where_it_moved(key, value, message):
    raw = default_params()
    raw["train"][key] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(raw)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ntrain:\n  epochs: [3\n  units: 4\n")
    with pytest.raises(ConfigError, match=r"params.yaml line \d+, column \d+: not valid YAML"):
        load_params(path)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"temperature": -1}, "params.temperature = -1.0: expected a value >= 0.0"),
        ({"temperature": float("nan")}, "params.temperature = nan: expected a finite number"),
        ({"top_k": -3}, "params.top_k = -3: expected a value >= 0"),
        ({"top_p": 1.5}, "params.top_p = 1.5: expected a value <= 1.0"),
        ({"max_length": 0}, "params.max_length = 0: expected a value >= 1"),
        ({"seed": 1.5}, "params.seed = 1.5: expected int"),
        ({"temprature": 1.0}, "params.temprature: unknown param"),
    ],
)
def test_sampling_settings_are_refused_with_the_reason(values, message):
    from mlproject.config import Sampling

    with pytest.raises(ConfigError, match=re.escape(message)):
        Sampling.checked(values)


def test_sampling_settings_accept_numpy_scalars_and_greedy_temperature():
    import numpy as np

    from mlproject.config import Sampling

    assert Sampling.checked({"max_length": np.int64(5), "temperature": np.float64(0.0)}) == Sampling(
        max_length=5, temperature=0.0
    )


@pytest.mark.parametrize(
    "prompts, message",
    [
        (["El ", None], "prompt 1 = None: expected text"),
        ([float("nan")], "prompt 0 = nan: expected text"),
        ([], "prompt: expected at least one prompt"),
    ],
)
def test_prompts_must_be_text(prompts, message):
    from mlproject.config import checked_prompts

    with pytest.raises(ConfigError, match=re.escape(message)):
        checked_prompts(prompts)
    assert checked_prompts(["", "Más"]) == ["", "Más"]
