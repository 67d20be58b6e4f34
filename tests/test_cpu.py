"""oneDNN is chosen by the CPU and by whether the stage trains; a user's setting wins."""

import os

import pytest

from mlproject.cli import main
from mlproject.cpu import use_onednn

MILAN, GENOA = (frozenset({"sse4_2", "avx", "avx2", "fma"}),
                frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"}))


@pytest.mark.parametrize("training, flags, expected",
                         [(True, MILAN, "1"), (True, GENOA, "1"), (False, MILAN, "0"), (False, GENOA, "1")])
def test_onednn_is_on_with_avx512_and_to_train_without_unless_the_user_says(training, flags, expected, monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    use_onednn(training, flags)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == expected
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1" if expected == "0" else "0")
    use_onednn(training, flags)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] != expected


def test_stages_other_than_train_turn_onednn_off_without_avx512(monkeypatch, capsys):
    from mlproject import cpu

    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    monkeypatch.setattr(os, "environ", environment)  # what main sets stays in this test
    monkeypatch.setattr(cpu, "cpu_flags", lambda: MILAN)
    assert main(["preset"]) == 0
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
