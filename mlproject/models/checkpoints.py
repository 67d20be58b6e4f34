"""The checkpoints folder every kind's training keeps: which training it belongs to (a fingerprint
of params, data and code, in its state file), the MLflow run to resume, and clearing it when stale."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from mlproject.fileio import read_json

STATE = "state.json"


def fingerprint(config, seed: int, files: Iterable[Path]) -> str:
    """What a checkpoint was trained from: the params, the seed and the bytes of `files` (the data
    and the training code); a checkpoint with another fingerprint is not resumed."""
    digest = hashlib.sha256(json.dumps([dataclasses.asdict(config), seed]).encode())
    for path in files:
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


def resume_point(checkpoints: Path, expected: str, checkpoint: str) -> dict | None:
    """The saved state if it belongs to this very training and its `checkpoint` file is there;
    otherwise clear the stale checkpoints."""
    state_file = checkpoints / STATE
    if state_file.is_file() and (checkpoints / checkpoint).is_file():
        state = read_json(state_file)
        if state.get("fingerprint") == expected:
            return state
    shutil.rmtree(checkpoints, ignore_errors=True)
    return None


def readable(checkpoints: Path, checkpoint: str, load: Callable[[Path], object], best: str):
    """`load(checkpoints / checkpoint)`, once the `best` weights load too; None when either cannot
    be read (truncated by a full disk, say), after setting the checkpoints folder aside for
    inspection, so training starts over."""
    for name in (best, checkpoint):
        try:
            loaded = load(checkpoints / name)
        except Exception as error:  # a damaged file surfaces as ValueError, OSError, a zip or pickle error
            aside = checkpoints.with_name(f"{checkpoints.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            checkpoints.rename(aside)
            reason = (str(error).splitlines() or [""])[0][:160]
            print(f"train: {checkpoints / name} cannot be read ({type(error).__name__}: {reason}); "
                  f"set aside in {aside}; starting over", flush=True)
            return None
    return loaded
