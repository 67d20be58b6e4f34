"""oneDNN is chosen by the CPU and by whether the stage trains; a user's setting wins."""

import os

import pytest

from mlproject.models.keras_rnn.fast_cpu.onednn import use_onednn
from mlproject.models.keras_rnn.settings import RnnTraining
from tests.conftest import paths_in

MILAN, GENOA = (
    frozenset({"sse4_2", "avx", "avx2", "fma"}),
    frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"}),
)


@pytest.mark.parametrize(
    "training, flags, expected", [(True, MILAN, "1"), (True, GENOA, "1"), (False, MILAN, "0"), (False, GENOA, "1")]
)
def test_onednn_is_on_with_avx512_and_to_train_without_unless_the_user_says(training, flags, expected, monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    use_onednn(training, flags)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == expected
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1" if expected == "0" else "0")
    use_onednn(training, flags)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] != expected


def test_loading_a_model_turns_onednn_off_without_avx512_and_training_on(monkeypatch, tmp_path):
    """What every stage but train does (evaluate, promote, generate load a saved model)."""
    from mlproject.models.keras_rnn import rnn as rnn_kind
    from mlproject.models.keras_rnn.fast_cpu import onednn

    monkeypatch.setattr(onednn, "cpu_flags", lambda: MILAN)
    for load, expected in [(True, "0"), (False, "1")]:
        environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        monkeypatch.setattr(os, "environ", environment)  # what is set stays in this test
        with pytest.raises(FileNotFoundError):  # set before anything is read
            if load:
                rnn_kind.RecurrentModel.load(tmp_path)
            else:
                rnn_kind.RecurrentModel.train(RnnTraining(), 0, paths_in(tmp_path))
        assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == expected
