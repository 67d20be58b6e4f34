"""The epoch log every kind's training keeps: the patience rule, the best and last checkpoints, a
loss that is not finite, and which checkpoints a change of settings or code makes stale."""

import dataclasses
import json

import pytest

from mlproject.config import ConfigError, load_params
from mlproject.models import epoch_log
from mlproject.models.epoch_log import EpochLog
from mlproject.models.keras_rnn.settings import RnnTraining
from tests.conftest import ROOT


def saver(name):
    return lambda path: path.write_text(name)


def run_epochs(folder, settings, losses):
    log = EpochLog(folder, "fingerprint", "last", "best")
    log.resume(lambda path: path.read_text())
    log.start("run")
    for epoch, loss in enumerate(losses, 1):
        if log.end_epoch(
            {"epoch": epoch, "loss": 1.0, "val_loss": loss}, settings, saver(f"best {epoch}"), saver(f"last {epoch}")
        ):
            break
    return log


@pytest.mark.parametrize(
    "losses, patience, epochs, best, stopped_at",
    [
        ([3.0, 2.5, 2.6, 2.4, 2.45, 2.5, 2.3], 2, 10, 4, 6),  # two epochs without a better loss
        ([3.0, 2.5, 2.6, 2.7, 2.8], 0, 5, 2, None),  # patience 0: every epoch runs
        ([3.0, 2.5, 2.6, 2.7], 2, 4, 2, None),  # the limit on the last epoch: not early
    ],
)
def test_early_stopping_rule(tmp_path, losses, patience, epochs, best, stopped_at):
    log = run_epochs(tmp_path / "checkpoints", RnnTraining(epochs=epochs, patience=patience), losses)
    state = json.loads((tmp_path / "checkpoints" / epoch_log.STATE).read_text())
    assert (
        state == log.state and state["best_epoch"] == best and state["best_val_loss"] == min(losses[: state["epoch"]])
    )
    assert state["stopped_early"] is (stopped_at is not None) and log.done is (stopped_at is not None)
    assert state["epoch"] == (stopped_at or len(losses))
    assert (tmp_path / "checkpoints/best").read_text() == f"best {best}"
    assert (tmp_path / "checkpoints/last").read_text() == f"last {state['epoch']}"
    assert [r["epoch"] for r in log.history(RnnTraining(epochs=epochs, patience=patience))] == list(
        range(1, state["epoch"] + 1)
    )


def test_a_validation_loss_that_is_not_finite_names_the_learning_rate_and_keeps_the_last_good_state(tmp_path):
    settings = RnnTraining(learning_rate=5.0, epochs=3)
    run_epochs(tmp_path, settings, [2.0])
    log = EpochLog(tmp_path, "fingerprint", "last", "best")
    assert log.resume(lambda path: path.read_text()) == "last 1"
    with pytest.raises(ConfigError, match="train.learning_rate = 5.0: the validation loss of epoch 2 is nan"):
        log.end_epoch({"epoch": 2, "loss": 1.0, "val_loss": float("nan")}, settings, saver("bad"), saver("bad"))
    assert (tmp_path / "last").read_text() == "last 1" and log.state["epoch"] == 1


@pytest.mark.parametrize("damaged", ["best", "last"])
def test_an_unreadable_checkpoint_is_set_aside_and_training_starts_over(tmp_path, damaged, capsys):
    folder = tmp_path / "checkpoints"
    run_epochs(folder, RnnTraining(epochs=3), [2.0])

    def load(path):
        if path.name == damaged:
            raise ValueError("truncated")
        return path.read_text()

    assert EpochLog(folder, "fingerprint", "last", "best").resume(load) is None
    aside = list(tmp_path.glob("checkpoints.unreadable-*"))
    assert len(aside) == 1 and not folder.exists() and (aside[0] / damaged).is_file()
    assert f"{folder / damaged} cannot be read (ValueError: truncated)" in capsys.readouterr().out


def test_another_fingerprint_clears_the_checkpoints(tmp_path):
    run_epochs(tmp_path / "checkpoints", RnnTraining(epochs=3), [2.0])
    assert EpochLog(tmp_path / "checkpoints", "another", "last", "best").resume(lambda p: p.read_text()) is None
    assert not (tmp_path / "checkpoints").exists()


def test_the_fingerprint_covers_the_kinds_settings_and_code_only(tmp_path):
    (tmp_path / "train.npy").write_bytes(b"data")
    train = load_params(ROOT / "params.yaml").train
    rnn = train.settings()
    gpt_changed = dataclasses.replace(train, gpt={**train.gpt, "heads": 8})  # another kind's settings
    assert epoch_log.fingerprint(gpt_changed.settings(), 1, [tmp_path / "train.npy"]) == epoch_log.fingerprint(
        rnn, 1, [tmp_path / "train.npy"]
    )
    for changed in (dataclasses.replace(rnn, units=128), dataclasses.replace(rnn, epochs=7)):
        assert epoch_log.fingerprint(changed, 1, [tmp_path / "train.npy"]) != epoch_log.fingerprint(
            rnn, 1, [tmp_path / "train.npy"]
        )
    files = {str(p.relative_to(ROOT)) for p in epoch_log.code_files("rnn")}
    assert "mlproject/models/keras_rnn/training.py" in files and "mlproject/models/keras_rnn/settings.py" in files
    assert not any("transformers_lm" in f for f in files)
    assert not any("keras_rnn" in str(p) for p in epoch_log.code_files("gpt"))
