"""Training checkpoints every epoch and resumes where it stopped, with the same result."""

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest

from mlproject.config import ConfigError
from mlproject.fileio import md5_of, read_json
from mlproject.models import kinds
from mlproject.models.keras_rnn.settings import RnnTraining
from mlproject.models.keras_rnn.training import batch_order, window_starts
from tests.conftest import BIN, run, tiny_params, write_params


def test_batch_order_depends_only_on_seed_and_epoch():
    config = RnnTraining(sequence_length=10, batch_size=4)
    starts = window_starts(200, config)
    assert np.array_equal(batch_order(starts, config, 1, 3), batch_order(starts, config, 1, 3))
    assert not np.array_equal(batch_order(starts, config, 1, 3), batch_order(starts, config, 1, 4))


def test_window_longer_than_text_names_the_param():
    with pytest.raises(ConfigError, match="train.rnn.sequence_length = 100: longer than the 50 training tokens"):
        window_starts(50, RnnTraining(sequence_length=100))


def training_params(workdir):
    params = tiny_params(workdir)
    params["train"]["epochs"] = 3
    params["train"]["patience"] = 0  # all three epochs, whatever the validation loss does
    return params


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """The sample corpus through scrape, validate and tokenize, once for every training test."""
    root = tmp_path_factory.mktemp("tokenized")
    write_params(root, training_params(root))
    for stage in ("scrape", "validate", "tokenize"):
        run(["mlproject", stage], root)
    return root / "data"


def prepared(tmp_path, tokenized):
    """A project in `tmp_path` whose tokens are ready: the train stage is next."""
    params = training_params(tmp_path)
    write_params(tmp_path, params)
    shutil.copytree(tokenized, tmp_path / "data")
    return params


def test_interrupted_training_resumes_at_next_epoch_and_matches_uninterrupted(tmp_path, tokenized):
    prepared(tmp_path, tokenized)
    first = run(["mlproject", "train", "--stop-after-epoch", "1"], tmp_path, check=False)
    assert first.returncode == 3 and "stopped after epoch 1 of 3" in first.stderr
    state = read_json(tmp_path / "models" / "checkpoints" / "state.json")
    assert state["epoch"] == 1
    second = run(["mlproject", "train"], tmp_path)
    assert "resuming from the checkpoint of epoch 1" in second.stdout
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    resumed = [json.loads(line) for line in (tmp_path / "models/checkpoints/history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert read_json(tmp_path / "models" / "run.json")["run_id"] == state["run_id"]

    # The same training without the interruption ends with the same losses.
    (tmp_path / "models").rename(tmp_path / "models-resumed")
    run(["mlproject", "train"], tmp_path)
    straight = [json.loads(line) for line in (tmp_path / "models/checkpoints/history.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in straight] == pytest.approx([r["loss"] for r in resumed], rel=1e-5)

    # Run again on the finished checkpoint: the same weights saved again, byte for byte, so DVC
    # sees an unchanged model and reruns nothing after train.
    before = {p.name: md5_of(p) for p in (tmp_path / "models" / "model").iterdir()}
    run(["mlproject", "train"], tmp_path)
    assert {p.name: md5_of(p) for p in (tmp_path / "models" / "model").iterdir()} == before


def test_changed_params_do_not_resume_a_stale_checkpoint(tmp_path, tokenized):
    params = prepared(tmp_path, tokenized)
    run(["mlproject", "train", "--stop-after-epoch", "1"], tmp_path, check=False)
    params["train"]["learning_rate"] = 0.01
    write_params(tmp_path, params)
    result = run(["mlproject", "train"], tmp_path)
    assert "resuming" not in result.stdout and "Epoch 1/3" in result.stdout


def test_a_training_killed_on_one_machine_resumes_on_another_from_the_checkpoint_kept_with_its_run(tmp_path, tokenized):
    """Three project folders that share only the MLflow store, as runners on three machines share
    the tracking server: a training SIGKILLed after its first epoch is taken up by a rerun in
    another folder, with no checkpoints of its own, and ends as the uninterrupted training does."""
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": store, "MLPROJECT_SHARED_CHECKPOINTS": "1"}
    straight, killed, rerun = (tmp_path / name for name in ("straight", "killed", "rerun"))
    for folder in (straight, killed, rerun):
        folder.mkdir()
        prepared(folder, tokenized)
    run(["mlproject", "train"], straight, env=env)
    expected = [json.loads(line) for line in (straight / "models/checkpoints/history.jsonl").read_text().splitlines()]

    # The same training again, elsewhere: the finished one's checkpoints are not taken up.
    process = subprocess.Popen(
        [str(BIN / "mlproject"), "train"],
        cwd=killed,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "the checkpoint of epoch 1 is kept with MLflow run" in line:
            process.kill()  # SIGKILL: nothing in the process gets to clean up
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL, "".join(lines)
    assert not any("fetched" in line for line in lines), "".join(lines)
    killed_run = read_json(killed / "models/checkpoints/state.json")["run_id"]

    resumed = run(["mlproject", "train"], rerun, env=env)
    assert f"fetched the checkpoint of epoch 1 from MLflow run {killed_run}" in resumed.stdout, resumed.stdout
    assert "resuming from the checkpoint of epoch 1" in resumed.stdout and "Epoch 1/3" not in resumed.stdout
    history = [json.loads(line) for line in (rerun / "models/checkpoints/history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in expected], rel=1e-5)
    assert [r["val_loss"] for r in history] == pytest.approx([r["val_loss"] for r in expected], rel=1e-5)
    # The killed training's MLflow run is the one that goes on, and ends finished.
    assert read_json(rerun / "models/run.json")["run_id"] == killed_run
    assert MlflowClient(store).get_run(killed_run).info.status == "FINISHED"

    # A runner that does not share (MLPROJECT_SHARED_CHECKPOINTS=0) neither fetches nor keeps.
    alone = run(["mlproject", "train"], killed, env={**env, "MLPROJECT_SHARED_CHECKPOINTS": "0"})
    assert "fetched" not in alone.stdout and "kept with MLflow run" not in alone.stdout


def test_early_stopping_keeps_the_best_epoch_and_resumes_with_its_patience(tmp_path, tokenized):
    """A learning rate high enough that the validation loss goes up and down: training stops after
    `patience` epochs without improvement and saves the best epoch's weights, across an interruption."""
    params = prepared(tmp_path, tokenized)
    params["train"].update(epochs=8, patience=1, learning_rate=0.1, optimizer="rmsprop")
    write_params(tmp_path, params)
    first = run(["mlproject", "train", "--stop-after-epoch", "2"], tmp_path, check=False)
    assert first.returncode == 3
    second = run(["mlproject", "train"], tmp_path)
    history = [json.loads(line) for line in (tmp_path / "models/checkpoints/history.jsonl").read_text().splitlines()]
    losses = [r["val_loss"] for r in history]
    best = int(np.argmin(losses)) + 1
    assert len(history) == best + 1 < 8, losses  # stopped one epoch after the best
    state = read_json(tmp_path / "models" / "checkpoints" / "state.json")
    assert state["stopped_early"] and state["best_epoch"] == best
    assert f"kept epoch {best}" in second.stdout and "stopped early" in second.stdout

    # The saved model is the best epoch's: it scores the validation windows as that epoch did.
    from mlproject.models import kinds
    from mlproject.models.keras_rnn.training import validation_arrays

    model = kinds.load(tmp_path / "models" / "model")
    inputs, targets = validation_arrays(
        model.vocabulary.encode((tmp_path / "data/tokens/validation.txt").read_text()), model.config
    )
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(targets, model.network(inputs))
    assert float(loss) == pytest.approx(losses[best - 1], rel=1e-3)


@pytest.mark.parametrize(
    "damaged, first_run", [("last.keras", ["--stop-after-epoch", "1"]), ("best.keras", [])]
)  # after a finished training
def test_an_unreadable_checkpoint_is_set_aside_and_training_starts_over(tmp_path, tokenized, damaged, first_run):
    prepared(tmp_path, tokenized)
    run(["mlproject", "train", *first_run], tmp_path, check=False)
    file = tmp_path / "models" / "checkpoints" / damaged
    size = file.stat().st_size // 2
    file.write_bytes(file.read_bytes()[:size])  # truncated, as by a full disk
    result = run(["mlproject", "train"], tmp_path)
    assert f"{damaged} cannot be read" in result.stdout and "starting over" in result.stdout
    assert "resuming" not in result.stdout
    aside = list((tmp_path / "models").glob("checkpoints.unreadable-*"))
    assert len(aside) == 1 and (aside[0] / damaged).stat().st_size == size
    history = [json.loads(line) for line in (tmp_path / "models/checkpoints/history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]


class TickingClock:
    """A clock that moves `tick` seconds each time it is read: a budget measured on it stops at the
    same batch on any machine."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def budgeted_training(tmp_path, tokenized, monkeypatch, minutes: float, epochs: int = 40, stop_after=None):
    import dataclasses

    from mlproject.config import load_params
    from mlproject.models.keras_rnn import training
    from mlproject.models.keras_rnn.rnn import RecurrentModel

    if not (tmp_path / "params.yaml").exists():  # a second call resumes the first one's training
        prepared(tmp_path, tokenized)
    params = load_params(tmp_path / "params.yaml")
    config = dataclasses.replace(params.train.settings(), epochs=epochs, max_minutes=minutes, patience=0)
    monkeypatch.setattr(training, "CLOCK", TickingClock(0.25))
    paths = params.paths.under(tmp_path)
    return RecurrentModel.train(config, params.seed, paths, stop_after=stop_after), paths


def test_a_time_budget_ends_the_rnn_training_as_a_finished_one_within_a_batch_of_it(
    tmp_path, tokenized, monkeypatch, capsys
):
    """20 s of budget on a clock that moves 0.25 s at each read (a few reads a batch): training ends
    long before its 40 epochs, the last epoch recorded like the others, the best weights saved."""
    result, paths = budgeted_training(tmp_path, tokenized, monkeypatch, minutes=1 / 3)
    state = read_json(paths.checkpoints / "state.json")
    assert state["budget_spent"] and 1 <= len(result.history) < 40 and not result.stopped_early
    assert 20 - 3 < state["spent_seconds"] <= 20 + 1  # within a batch (and its clock reads) of it
    assert [r["epoch"] for r in result.history] == list(range(1, len(result.history) + 1))
    assert result.best_epoch >= 1 and kinds.load(paths.model).kind == "rnn"
    said = capsys.readouterr().out
    assert f"train: train.rnn.max_minutes = 0.333333 spent in epoch {len(result.history)} of 40" in said


def test_an_rnn_budget_below_one_batch_is_refused_with_the_measured_batch_time(tmp_path, tokenized, monkeypatch):
    refused = r"train.rnn.max_minutes = 0.001: too short .*\(a batch takes 0.25 s measured"
    with pytest.raises(ConfigError, match=refused):
        budgeted_training(tmp_path, tokenized, monkeypatch, minutes=0.001)


def test_a_resumed_rnn_training_goes_on_with_the_time_its_budget_has_left(tmp_path, tokenized, monkeypatch):
    with pytest.raises(InterruptedError):
        budgeted_training(tmp_path, tokenized, monkeypatch, minutes=1 / 3, stop_after=1)
    first = read_json(tmp_path / "models" / "checkpoints" / "state.json")["spent_seconds"]
    result, paths = budgeted_training(tmp_path, tokenized, monkeypatch, minutes=1 / 3)  # a new clock from 0
    state = read_json(paths.checkpoints / "state.json")
    assert first > 5 and state["budget_spent"] and state["spent_seconds"] <= 20 + 1 and len(result.history) < 40
