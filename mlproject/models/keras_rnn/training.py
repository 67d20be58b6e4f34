"""Training of the Keras RNN kinds: checkpoints every epoch, resume after a stop, early stopping.

The batch order of every epoch is drawn from (seed, epoch), so a run resumed at epoch k sees the
same batches as one that never stopped, and both end with the same weights. The best epoch's
weights (lowest validation loss) are kept beside the last ones and are what the model is saved with.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from mlproject.config import ConfigError, Paths
from mlproject.data.tokens import Vocabulary, read_separator
from mlproject.models import epoch_log
from mlproject.models.interface import TrainingResult
from mlproject.models.keras_rnn.settings import RnnTraining

CHECKPOINT, BEST = "last.keras", "best.keras"
CLOCK = time.perf_counter  # what a time budget reads (the tests give it a clock of their own)


def window_starts(n_tokens: int, config: RnnTraining) -> np.ndarray:
    """Start of every training window; each window needs its inputs and the token after them."""
    step = config.step or config.sequence_length
    last_start = n_tokens - config.sequence_length - 1
    if last_start < 0:
        raise ConfigError(
            f"train.{config.kind}.sequence_length = {config.sequence_length}: longer than the "
            f"{n_tokens} training tokens; expected a shorter window or more text"
        )
    return np.arange(0, last_start + 1, step, dtype=np.int64)


def batch_order(starts: np.ndarray, config: RnnTraining, seed: int, epoch: int) -> np.ndarray:
    """This epoch's window starts, shuffled by (seed, epoch) and cut into whole batches."""
    shuffled = np.random.default_rng([seed, epoch]).permutation(starts)
    batches = len(shuffled) // config.batch_size
    if config.max_steps_per_epoch:
        batches = min(batches, config.max_steps_per_epoch)
    if batches == 0:
        raise ConfigError(
            f"train.batch_size = {config.batch_size}: more than the {len(starts)} "
            "training windows; expected a smaller batch or more text"
        )
    return shuffled[: batches * config.batch_size].reshape(batches, config.batch_size)


def windows(ids: np.ndarray, starts: np.ndarray, config: RnnTraining) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.arange(config.sequence_length)
    inputs = ids[starts[..., None] + offsets]
    if config.target == "last":
        return inputs, ids[starts + config.sequence_length]
    return inputs, ids[starts[..., None] + offsets + 1]


def training_dataset(ids, config: RnnTraining, seed: int, first_epoch: int):
    """Batches of epochs first_epoch..epochs-1, built ahead of the model by tf.data."""
    import tensorflow as tf

    starts = window_starts(len(ids), config)
    order = np.concatenate(
        [
            batch_order(starts, config, seed, e)  # all epochs' order, made up front
            for e in range(first_epoch, config.epochs)
        ]
    )
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


def validation_arrays(ids: np.ndarray, config: RnnTraining, limit: int = 4096):
    """Non-overlapping validation windows (at most `limit`), for the per-epoch validation loss."""
    spaced = dataclasses.replace(config, step=config.sequence_length)
    starts = window_starts(len(ids), spaced)[:limit]
    return windows(ids, starts, config)


def make_optimizer(config: RnnTraining):
    import keras

    kinds = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    return kinds[config.optimizer](learning_rate=config.learning_rate)


def compile_model(model, config: RnnTraining):
    """The one way a model is compiled for training, shared by `train` and the benchmarks."""
    import keras

    model.compile(optimizer=make_optimizer(config), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fingerprint(config: RnnTraining, seed: int, tokens_dir: Path) -> str:
    """What a checkpoint was trained from: settings, data and this kind's code."""
    return epoch_log.fingerprint(config, seed, [tokens_dir / "train.npy", tokens_dir / "vocab.json"])


def save_keras(model, path: Path) -> None:
    partial = path.with_name(f".partial.{path.name}")
    model.save(partial)  # Keras wants a .keras name, so rename by hand
    partial.replace(path)


def epoch_callback(log: epoch_log.EpochLog, config: RnnTraining, on_epoch=None, stop_after: int | None = None):
    """After each epoch: the epoch log keeps the best and last models and says when to stop."""
    import keras

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            stop = log.end_epoch(
                record, config, lambda path: save_keras(self.model, path), lambda path: save_keras(self.model, path)
            )
            if on_epoch:
                on_epoch(record)
            if stop or (stop_after is not None and epoch + 1 >= stop_after):
                self.model.stop_training = True

    return Checkpoint()


def time_budget(config: RnnTraining, log: epoch_log.EpochLog, validation_batches: int, started: float):
    """`max_minutes` for the Keras kinds, counted from `started` (loading counts), or None without one. Their
    learning rate is constant, so there is no schedule to fit: training ends after the batch beyond
    which one more batch and the epoch's end (validation and checkpoints) would overrun the budget,
    and that epoch is recorded like any other, the best weights kept. An epoch's end is measured at
    the start of the next; before the first epoch ends, guessed as its validation batches at a third of a
    training batch each, plus one batch. The time spent is kept in the checkpoint's state, so a
    resumed training goes on with what is left."""
    import keras

    if not config.max_minutes:
        return None
    key, seconds = f"train.{config.kind}.max_minutes", config.max_minutes * 60
    spent_before = log.state.get("spent_seconds", 0.0)  # by the runs this one resumes

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches, self.mark, self.epoch_end, self.spent_out = [], None, None, False

        def spent(self) -> float:
            return spent_before + CLOCK() - started

        def step(self) -> float:  # the first batch of a run pays for tracing: not counted once others are
            return statistics.median(self.batches[1:] or self.batches)

        def end_guess(self) -> float:
            return self.epoch_end if self.epoch_end is not None else (validation_batches / 3 + 1) * self.step()

        def on_train_batch_begin(self, batch, logs=None):
            if self.mark is not None and not batch:  # the last epoch's end (validation, checkpoints), measured
                self.epoch_end = CLOCK() - self.mark
            self.mark = CLOCK()

        def on_train_batch_end(self, batch, logs=None):
            now = CLOCK()
            self.batches.append(now - self.mark)
            self.mark = now
            if len(self.batches) == 2 and seconds < self.step() + self.end_guess():
                raise ConfigError(
                    f"{key} = {config.max_minutes:g}: too short for one batch and an epoch's end here (a batch "
                    f"takes {self.step():.2f} s measured, an epoch's validation and checkpoints about "
                    f"{self.end_guess():.1f} s); expected at least {(self.step() + self.end_guess()) / 60:.2g} "
                    "minutes, or 0 for no budget"
                )
            self.check()

        def on_epoch_end(self, epoch, logs=None):
            self.check()
            log.state["spent_seconds"] = self.spent()  # written with the epoch's state, after this

        def check(self) -> None:
            if len(self.batches) >= 2 and self.spent() + self.step() + self.end_guess() > seconds:
                self.spent_out = self.model.stop_training = True

        def finish(self) -> None:
            """After training: a spent budget ends it as a finished training."""
            if self.spent_out:
                log.finish(budget_spent=True, spent_seconds=self.spent())
                print(
                    f"train: {key} = {config.max_minutes:g} spent in epoch {log.state['epoch']} of {config.epochs}; "
                    f"stopping, keeping epoch {log.state['best_epoch']}",
                    flush=True,
                )

    return Budget()


def train(
    model_class,
    config: RnnTraining,
    seed: int,
    paths: Paths,
    on_epoch=None,
    run_id: str | None = None,
    stop_after: int | None = None,
) -> TrainingResult:
    """Fit (or resume) a model of `model_class`; save the best epoch's weights to `paths.model`."""
    from mlproject.models import kinds
    from mlproject.models.keras_rnn.network import build_network, load_network, set_seed

    started = CLOCK()  # a time budget counts loading too
    if config.fast_layers:
        from mlproject.models.keras_rnn.fast_cpu.keras_internals import check_keras_internals

        check_keras_internals()  # before a checkpoint that needs them is loaded
    set_seed(seed)
    tokens = Path(paths.tokens)
    vocabulary = Vocabulary.load(tokens / "vocab.json")
    ids = np.load(tokens / "train.npy")
    validation_ids = vocabulary.encode((tokens / "validation.txt").read_text(encoding="utf-8"))
    log = epoch_log.EpochLog(paths.checkpoints, fingerprint(config, seed, tokens), CHECKPOINT, BEST)
    model = log.resume(load_network)
    if model is not None:
        run_id = run_id or log.state.get("run_id")  # the stage's run wins: it may stand in for a lost one
    else:
        model = compile_model(build_network(config, len(vocabulary)), config)
        log.start(run_id)
    first_epoch = log.state["epoch"]
    if first_epoch < config.epochs and not log.done:
        dataset, steps = training_dataset(ids, config, seed, first_epoch)
        validation = validation_arrays(validation_ids, config)
        budget = time_budget(config, log, -(-len(validation[0]) // config.batch_size), started)
        model.fit(
            dataset,
            epochs=config.epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=steps,
            validation_data=validation,
            validation_batch_size=config.batch_size,
            shuffle=False,  # order is ours, by (seed, epoch)
            verbose=1 if sys.stdout.isatty() else 2,
            # The budget first: the epoch's state the checkpoint writes holds the time it has spent.
            callbacks=[*filter(None, [budget]), epoch_callback(log, config, on_epoch, stop_after)],
        )
        if budget:
            budget.finish()
    history = log.history(config)
    epoch_log.write_plot(paths.training_plot, log.folder)
    best = load_network(log.folder / BEST, compile=False)
    kinds.save(model_class(best, vocabulary, config, read_separator(tokens)), paths.model)
    return TrainingResult(
        history=history,
        parameters=int(model.count_params()),
        best_epoch=log.state["best_epoch"],
        stopped_early=bool(log.state.get("stopped_early")),  # by patience; a spent budget ends on time
        resumed_from_epoch=first_epoch,
        run_id=run_id,
    )
