"""The DVC workspace an orchestrated run works in: one run at a time, and the params it is given
for that run only (written where dvc.lock and the MLflow run record them, then put back).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlproject.cli import apply_preset, apply_values
from mlproject.config import StageFailed

LOCK_FILE = ".dvc/tmp/mlproject-run.lock"  # inside .dvc/tmp: git and DVC ignore it


@contextmanager
def one_run_at_a_time(repo_dir: str | Path, holder: str) -> Iterator[None]:
    """Hold the workspace for the whole run (DVC's own lock lasts one `dvc repro`, not eight);
    a second run is refused in one line naming the run that holds it."""
    path = Path(repo_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise StageFailed(f"{Path(repo_dir).resolve()}: another training run holds this workspace "
                              f"({handle.read().strip() or 'unknown'}); wait for it to finish, or cancel it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


def overrides(epochs: int | None = None, sources: list[dict] | None = None,
              prompts_file: str | None = None) -> dict:
    """The params a run's arguments stand for (None leaves params.yaml's value)."""
    values = {"train": {"epochs": epochs}, "scrape": {"sources": sources},
              "generate": {"prompts_file": prompts_file}}
    return {section: {k: v for k, v in keys.items() if v is not None}
            for section, keys in values.items() if any(v is not None for v in keys.values())}


@contextmanager
def params_for_this_run(repo_dir: str | Path, preset: str | None = None, **values) -> Iterator[list[str]]:
    """params.yaml with a preset (from presets/) and then `overrides(**values)` applied, each
    validated before anything runs; afterwards params.yaml is put back as it was, so the next run
    starts from the team's params while dvc.lock keeps what this one ran."""
    params_path = Path(repo_dir) / "params.yaml"
    original = params_path.read_text(encoding="utf-8")
    try:
        changed = apply_preset(params_path, Path(repo_dir) / "presets" / f"{preset}.yaml") if preset else []
        if overrides(**values):
            changed += apply_values(params_path, overrides(**values))
        yield changed
    finally:
        if params_path.read_text(encoding="utf-8") != original:
            from mlproject.fileio import write_text

            write_text(params_path, original)
