"""Training of the Keras RNN kinds: checkpoints every epoch, resume after a stop, early stopping.

The batch order of every epoch is drawn from (seed, epoch), so a run resumed at epoch k sees the
same batches as one that never stopped, and both end with the same weights. The best epoch's
weights (lowest validation loss) are kept beside the last ones and are what the model is saved with.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np

import mlproject
from mlproject.config import ConfigError, Paths, TrainConfig
from mlproject.data.tokens import Vocabulary
from mlproject.fileio import atomic_path, read_json, write_json
from mlproject.models import checkpoints as checkpoint_state
from mlproject.models.interface import TrainingResult

CHECKPOINT, BEST, HISTORY = "last.keras", "best.keras", "history.jsonl"


def window_starts(n_tokens: int, config: TrainConfig) -> np.ndarray:
    """Start of every training window; each window needs its inputs and the token after them."""
    step = config.step or config.sequence_length
    last_start = n_tokens - config.sequence_length - 1
    if last_start < 0:
        raise ConfigError(f"train.sequence_length = {config.sequence_length}: longer than the "
                          f"{n_tokens} training tokens; expected a shorter window or more text")
    return np.arange(0, last_start + 1, step, dtype=np.int64)


def batch_order(starts: np.ndarray, config: TrainConfig, seed: int, epoch: int) -> np.ndarray:
    """This epoch's window starts, shuffled by (seed, epoch) and cut into whole batches."""
    shuffled = np.random.default_rng([seed, epoch]).permutation(starts)
    batches = len(shuffled) // config.batch_size
    if config.max_steps_per_epoch:
        batches = min(batches, config.max_steps_per_epoch)
    if batches == 0:
        raise ConfigError(f"train.batch_size = {config.batch_size}: more than the {len(starts)} "
                          "training windows; expected a smaller batch or more text")
    return shuffled[: batches * config.batch_size].reshape(batches, config.batch_size)


def windows(ids: np.ndarray, starts: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.arange(config.sequence_length)
    inputs = ids[starts[..., None] + offsets]
    if config.target == "last":
        return inputs, ids[starts + config.sequence_length]
    return inputs, ids[starts[..., None] + offsets + 1]


def training_dataset(ids, config: TrainConfig, seed: int, first_epoch: int):
    """Batches of epochs first_epoch..epochs-1, built ahead of the model by tf.data."""
    import tensorflow as tf

    starts = window_starts(len(ids), config)
    order = np.concatenate([batch_order(starts, config, seed, e)  # all epochs' order, made up front
                            for e in range(first_epoch, config.epochs)])
    ids_tensor = tf.constant(ids, dtype=tf.int32)

    def gather(batch_starts):
        offsets = tf.range(config.sequence_length, dtype=tf.int64)
        inputs = tf.gather(ids_tensor, batch_starts[:, None] + offsets)
        if config.target == "last":
            return inputs, tf.gather(ids_tensor, batch_starts + config.sequence_length)
        return inputs, tf.gather(ids_tensor, batch_starts[:, None] + offsets + 1)

    # A batch is one cheap gather, so one producer two batches ahead keeps the model fed. tf.data's
    # autotuning is off: on 2 cores the training loop stalled until its optimiser's next tick
    # (benchmarks/optimisations.md).
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensor_slices(order).map(gather).prefetch(2).with_options(options)
    return dataset, len(order) // max(1, config.epochs - first_epoch)


def validation_arrays(ids: np.ndarray, config: TrainConfig, limit: int = 4096):
    """Non-overlapping validation windows (at most `limit`), for the per-epoch validation loss."""
    spaced = dataclasses.replace(config, step=config.sequence_length)
    starts = window_starts(len(ids), spaced)[:limit]
    return windows(ids, starts, config)


def make_optimizer(config: TrainConfig):
    import keras

    kinds = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
             "sgd": keras.optimizers.SGD}
    return kinds[config.optimizer](learning_rate=config.learning_rate)


def compile_model(model, config: TrainConfig):
    """The one way a model is compiled for training, shared by `train` and the benchmarks."""
    import keras

    model.compile(optimizer=make_optimizer(config),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def code_files() -> list[Path]:
    """The code whose change makes a checkpoint stale: every model kind and what they import.

    The train stage's `deps` in dvc.yaml name the same files and folders (tests/test_dvc_deps.py).
    """
    package = Path(mlproject.__file__).parent
    shared = [package / "__init__.py", package / "config.py", package / "fileio.py",
              package / "data" / "__init__.py", package / "data" / "tokens.py",
              package / "data" / "speller.py"]
    return shared + sorted((package / "models").rglob("*.py"))


def fingerprint(config: TrainConfig, seed: int, tokens_dir: Path) -> str:
    """What a checkpoint was trained from: params, data and the training code itself."""
    return checkpoint_state.fingerprint(config, seed, [tokens_dir / "train.npy", tokens_dir / "vocab.json",
                                                       *code_files()])


def save_keras(model, path: Path) -> None:
    partial = path.with_name(f".partial.{path.name}")
    model.save(partial)  # Keras wants a .keras name, so rename by hand
    partial.replace(path)


def epoch_callback(checkpoints: Path, state: dict, config: TrainConfig, on_epoch=None,
                   stop_after: int | None = None):
    """After each epoch: keep the best weights, save the last ones with the optimizer, then the
    state pointing at them; stop after `config.patience` epochs without a better validation loss."""
    import keras

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            if not math.isfinite(record["val_loss"]):
                raise ConfigError(f"train.learning_rate = {config.learning_rate}: the validation loss "
                                  f"of epoch {epoch + 1} is {record['val_loss']}; expected a lower "
                                  "learning rate (the last good checkpoint is kept)")
            if record["val_loss"] < state.get("best_val_loss", float("inf")):
                save_keras(self.model, checkpoints / BEST)
                state.update(best_val_loss=record["val_loss"], best_epoch=epoch + 1)
            save_keras(self.model, checkpoints / CHECKPOINT)
            with open(checkpoints / HISTORY, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            stale = epoch + 1 - state["best_epoch"]
            state.update(epoch=epoch + 1, stopped_early=bool(config.patience) and stale >= config.patience
                         and epoch + 1 < config.epochs)
            write_json(checkpoints / checkpoint_state.STATE, state)
            if on_epoch:
                on_epoch(record)
            if state["stopped_early"]:
                print(f"train: validation loss has not improved for {stale} epochs (patience "
                      f"{config.patience}); stopping, keeping epoch {state['best_epoch']}", flush=True)
            if state["stopped_early"] or (stop_after is not None and epoch + 1 >= stop_after):
                self.model.stop_training = True

    return Checkpoint()


def train(model_class, config: TrainConfig, seed: int, paths: Paths, on_epoch=None,
          run_id: str | None = None, stop_after: int | None = None) -> TrainingResult:
    """Fit (or resume) a model of `model_class`; save the best epoch's weights to `paths.model`."""
    from mlproject.models import kinds
    from mlproject.models.keras_rnn.network import build_network, load_network, set_seed

    if config.fast_layers:
        from mlproject.models.keras_rnn.fast_cpu.keras_internals import check_keras_internals

        check_keras_internals()  # before a checkpoint that needs them is loaded
    set_seed(seed)
    tokens, checkpoints = Path(paths.tokens), paths.checkpoints
    vocabulary = Vocabulary.load(tokens / "vocab.json")
    ids = np.load(tokens / "train.npy")
    validation_ids = vocabulary.encode((tokens / "validation.txt").read_text(encoding="utf-8"))
    expected = fingerprint(config, seed, tokens)
    state = checkpoint_state.resume_point(checkpoints, expected, CHECKPOINT)
    model = checkpoint_state.readable(checkpoints, CHECKPOINT, load_network, BEST) if state else None
    state = state if model is not None else None
    checkpoints.mkdir(parents=True, exist_ok=True)
    if state:
        first_epoch = state["epoch"]
        keep_history(checkpoints / HISTORY, first_epoch)
        run_id = run_id or state.get("run_id")  # the stage's run wins: it may stand in for a lost one
        print(f"train: resuming from the checkpoint of epoch {first_epoch} in {checkpoints}", flush=True)
    else:
        model = compile_model(build_network(config, len(vocabulary)), config)
        first_epoch = 0
        state = {"fingerprint": expected, "run_id": run_id, "epoch": 0, "best_epoch": 0}
    if first_epoch < config.epochs and not state.get("stopped_early"):
        dataset, steps = training_dataset(ids, config, seed, first_epoch)
        model.fit(dataset, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  validation_data=validation_arrays(validation_ids, config),
                  validation_batch_size=config.batch_size, shuffle=False,  # order is ours, by (seed, epoch)
                  verbose=1 if sys.stdout.isatty() else 2,
                  callbacks=[epoch_callback(checkpoints, state, config, on_epoch, stop_after)])
    history = [json.loads(line) for line in (checkpoints / HISTORY).read_text().splitlines()]
    if history[-1]["epoch"] < config.epochs and not state.get("stopped_early"):
        raise InterruptedError(f"stopped after epoch {history[-1]['epoch']} of {config.epochs}")
    write_plot(paths.training_plot, history)
    best = load_network(checkpoints / BEST, compile=False)
    kinds.save(model_class(best, vocabulary, config, read_separator(tokens)), paths.model)
    return TrainingResult(history=history, parameters=int(model.count_params()),
                          best_epoch=state["best_epoch"], stopped_early=bool(state.get("stopped_early")),
                          resumed_from_epoch=first_epoch, run_id=run_id)


def keep_history(path: Path, epochs: int) -> None:
    """The history of the first `epochs` epochs only: a run killed after writing an epoch's record
    but before its state resumes at that epoch and writes the record again."""
    records = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= epochs]
    path.write_text("".join(f"{line}\n" for line in records))


def read_separator(tokens: Path) -> str:
    return read_json(tokens / "summary.json").get("separator", "\n\n")


def write_plot(path: str, history: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "loss", "val_loss"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
