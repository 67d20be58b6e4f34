"""The epoch log every kind's training keeps in its checkpoints folder: which training it belongs to
(a fingerprint of the kind's settings, the seed, the data and the kind's code), the history of
each epoch, the best and last checkpoints, the patience rule, and setting aside what cannot be read.

A kind saves its own checkpoints (Keras files, PyTorch state) through the callables it passes in;
everything else about an epoch's end is decided here, once for every kind.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import mlproject
from mlproject.fileio import atomic_path, read_json, write_json
from mlproject.param_rules import ConfigError

STATE, HISTORY, STEPS = "state.json", "history.jsonl", "history.steps.jsonl"
PACKAGE = Path(mlproject.__file__).parent

# The code every kind's training runs besides its own package (the kind's settings read through
# these): a change to any of it makes every kind's checkpoints stale. The train stage's deps in
# dvc.yaml name the same files (tests/test_dvc_deps.py).
SHARED_CODE = tuple(
    PACKAGE / name
    for name in (
        "__init__.py",
        "fileio.py",
        "param_rules.py",
        "data/__init__.py",
        "data/tokens.py",
        "data/speller.py",
        "models/__init__.py",
        "models/settings.py",
        "models/interface.py",
        "models/kinds.py",
        "models/noise.py",
        "models/epoch_log.py",
        "models/cpu.py",
        "models/evaluation.py",
    )
)


def kind_package(kind: str) -> Path:
    """The folder of a kind's code (mlproject/models/by_kind/<kind>, a link to its package)."""
    return PACKAGE / "models" / "by_kind" / kind


def code_files(kind: str) -> list[Path]:
    """The code whose change makes a checkpoint of `kind` stale: the shared code and its package."""
    return [*SHARED_CODE, *sorted(kind_package(kind).resolve().rglob("*.py"))]


def fingerprint(settings, seed: int, data: Iterable[Path]) -> str:
    """What a checkpoint was trained from: the kind's settings, the seed, the bytes of `data` and the
    kind's code; a checkpoint with another fingerprint is not resumed."""
    digest = hashlib.sha256(json.dumps([dataclasses.asdict(settings), seed]).encode())
    for path in [*data, *code_files(settings.kind)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def resumable_run_id(checkpoints: Path, expected: Callable[[], str]) -> str | None:
    """The MLflow run of an interrupted training of this fingerprint (computed only if there is a
    state to compare it with)."""
    state_file = checkpoints / STATE
    if not state_file.is_file():
        return None
    state = read_json(state_file)
    return state.get("run_id") if state.get("fingerprint") == expected() else None


def write_plot(path: str, checkpoints: Path) -> None:
    """The loss curve for DVC: one row per epoch, or, where the kind logs its optimizer steps, one row
    per step (epoch as a fraction) with the validation loss where it was measured (each epoch's end,
    and every `validate_every_steps`)."""
    epochs = read_records(checkpoints / HISTORY)
    steps = read_records(checkpoints / STEPS)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        if not steps:
            writer = csv.DictWriter(handle, fieldnames=["epoch", "loss", "val_loss"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(epochs)
            return
        validation = {record["step"]: record["val_loss"] for record in epochs}
        writer = csv.DictWriter(
            handle, fieldnames=["epoch", "step", "loss", "val_loss", "learning_rate", "tokens_per_second"]
        )
        writer.writeheader()
        for record in steps:
            writer.writerow(
                {
                    "epoch": round(record["epoch"], 6),
                    "step": record["step"],
                    "loss": record["train_loss"],
                    "val_loss": record.get("val_loss", validation.get(record["step"], "")),
                    "learning_rate": record["learning_rate"],
                    "tokens_per_second": record["tokens_per_second"],
                }
            )


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class EpochLog:
    """One training's checkpoints folder: `last` (the state to resume from) and `best` (the weights
    with the lowest validation loss) in the kind's own format, the state pointing at them and the
    history of every epoch (and step, where the kind logs them)."""

    def __init__(self, folder: Path, fingerprint: str, last: str, best: str):
        self.folder, self.fingerprint, self.last, self.best = Path(folder), fingerprint, last, best
        self.state: dict = {}

    def resume(self, load: Callable[[Path], object]):
        """What `load` reads from the last checkpoint of this very training, the state pointing at it
        kept; None when there is none (stale checkpoints cleared) or when the last or best one cannot
        be read (set aside for inspection, so training starts over)."""
        state_file = self.folder / STATE
        state = read_json(state_file) if state_file.is_file() and (self.folder / self.last).is_file() else {}
        if state.get("fingerprint") != self.fingerprint:
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        for name in (self.best, self.last):
            try:
                loaded = load(self.folder / name)
            except Exception as error:  # a damaged file surfaces as ValueError, OSError, a zip or pickle error
                aside = self.folder.with_name(f"{self.folder.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
                self.folder.rename(aside)
                reason = (str(error).splitlines() or [""])[0][:160]
                print(
                    f"train: {self.folder / name} cannot be read ({type(error).__name__}: {reason}); "
                    f"set aside in {aside}; starting over",
                    flush=True,
                )
                return None
        self.state = state
        for path in (self.folder / HISTORY, self.folder / STEPS):  # a run killed between writing an
            kept = [r for r in read_records(path) if r["epoch"] <= state["epoch"]]  # epoch's record and
            if path.is_file():  # its state writes the record again
                path.write_text("".join(f"{json.dumps(r)}\n" for r in kept))
        print(f"train: resuming from the checkpoint of epoch {state['epoch']} in {self.folder}", flush=True)
        return loaded

    def start(self, run_id: str | None, **extra) -> None:
        """A new training: an empty history (`resume` has cleared or set aside anything older)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / HISTORY).write_text("")
        self.state = {"fingerprint": self.fingerprint, "run_id": run_id, "epoch": 0, "best_epoch": 0, **extra}

    @property
    def done(self) -> bool:
        """Stopped by patience, or by the kind's time budget: a finished training either way."""
        return bool(self.state.get("stopped_early") or self.state.get("budget_spent"))

    def end_epoch(
        self,
        record: dict,
        settings,
        save_best: Callable[[Path], None],
        save_last: Callable[[Path], None],
        writer: bool = True,
    ) -> bool:
        """After epoch `record["epoch"]`: refuse a non-finite validation loss, keep the best weights,
        save the last state, then the history and the state pointing at them (only the `writer`
        process of several writes). True when training should stop: `settings.patience` epochs
        without a better validation loss."""
        epoch, loss = record["epoch"], record["val_loss"]
        if not math.isfinite(loss):
            raise ConfigError(
                f"train.learning_rate = {settings.learning_rate}: the validation loss of "
                f"epoch {epoch} is {loss}; expected a lower learning rate (the last good "
                "checkpoint is kept)"
            )
        if loss < self.state.get("best_val_loss", float("inf")):
            if writer:
                save_best(self.folder / self.best)
            self.state.update(best_val_loss=loss, best_epoch=epoch)
        stale = epoch - self.state["best_epoch"]
        self.state.update(
            epoch=epoch,
            stopped_early=bool(settings.patience) and stale >= settings.patience and epoch < settings.epochs,
        )
        if writer:
            save_last(self.folder / self.last)
            with open(self.folder / HISTORY, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            write_json(self.folder / STATE, self.state)
        print(f"train: epoch {epoch}: loss {record['loss']:.4f}, val_loss {loss:.4f}", flush=True)
        if self.state["stopped_early"]:
            print(
                f"train: validation loss has not improved for {stale} epochs (patience "
                f"{settings.patience}); stopping, keeping epoch {self.state['best_epoch']}",
                flush=True,
            )
        return self.done

    def finish(self, **state) -> None:
        """End the training before its last epoch (its time spent), recording why in the state."""
        self.state.update(state)
        write_json(self.folder / STATE, self.state)

    def log_step(self, record: dict) -> None:
        with open(self.folder / STEPS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def history(self, settings) -> list[dict]:
        """Every epoch's record; InterruptedError when training stopped before its last epoch on
        request (not by patience)."""
        history = read_records(self.folder / HISTORY)
        if not history or history[-1]["epoch"] < settings.epochs and not self.done:
            raise InterruptedError(f"stopped after epoch {self.state.get('epoch', 0)} of {settings.epochs}")
        return history
