"""Params are validated once, with an error that names the key and what is expected."""

import pytest
import yaml

from mlproject.config import ConfigError, load_params, params_from_dict
from tests.conftest import ROOT


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.train.cell == "gru" and params.scrape.sources[0].name == "fortunes-es"


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "epochs", -1, "train.epochs = -1: expected a value >= 1"),
    ("train", "cell", "transformer", "train.cell = 'transformer': expected one of gru, lstm"),
    ("train", "kind", "gpt", "train.kind = 'gpt': expected one of rnn, window_rnn"),
    ("train", "patience", -1, "train.patience = -1: expected a value >= 0"),
    ("train", "epochs", "ten", "train.epochs = 'ten': expected int"),
    ("train", "learning_rat", 0.1, "train.learning_rat: unknown param"),
    ("tokenize", "level", "byte", "tokenize.level = 'byte': expected one of char, word"),
    ("generate", "top_p", 1.5, "generate.top_p = 1.5: expected a value <= 1.0"),
])
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


def test_window_kind_needs_target_last():
    raw = default_params()
    raw["train"]["kind"] = "window_rnn"
    with pytest.raises(ConfigError, match="train.kind = window_rnn: expected train.target = last"):
        params_from_dict(raw)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
