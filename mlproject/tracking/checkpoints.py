"""A training's checkpoints kept with its MLflow run as each epoch writes them, so that a rerun on
another machine (the replacement of a preempted GPU node, a worker killed mid-training) resumes
from the last epoch instead of starting over.

The local checkpoints folder (`paths.checkpoints`) stays what training reads and writes; this only
copies it to the run's artifacts and, where a workspace has none, back. Two slots take turns:
epoch N goes to `checkpoints/slot-{N % 2}`, its state file last, so a copy cut short leaves the
other slot, one epoch older, whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mlproject.models.epoch_log import STATE

SHARED = "MLPROJECT_SHARED_CHECKPOINTS"  # "1": keep them with the run (an orchestrated run's default)
FINGERPRINT_TAG = "checkpoint_fingerprint"  # which training the run's checkpoints belong to
FOLDER = "checkpoints"
SLOTS = 2


def wanted() -> bool:
    return os.environ.get(SHARED) == "1"


def slot(epoch: int) -> str:
    return f"{FOLDER}/slot-{epoch % SLOTS}"


def keep(client, run_id: str, checkpoints: Path, epoch: int) -> None:
    """Copy the checkpoints folder, as it stands after `epoch`, to the run's artifacts."""
    for path in sorted(checkpoints.iterdir()):
        if path.name == STATE:
            continue
        if path.is_dir():
            client.log_artifacts(run_id, str(path), f"{slot(epoch)}/{path.name}")
        else:
            client.log_artifact(run_id, str(path), slot(epoch))
    client.log_artifact(run_id, str(checkpoints / STATE), slot(epoch))  # last: the slot is whole
    print(f"train: the checkpoint of epoch {epoch} is kept with MLflow run {run_id} ({slot(epoch)})", flush=True)


def fetch(client, experiment_name: str, fingerprint: str, checkpoints: Path) -> bool:
    """Put in `checkpoints` the newest whole checkpoint of an unfinished training with this
    fingerprint (the same params, seed, data and code) kept by any machine; False if none."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return False
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.{FINGERPRINT_TAG} = '{fingerprint}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return False
    run_id = runs[0].info.run_id
    checkpoints.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=checkpoints.parent, prefix=".checkpoints-") as staging:
        states = {}
        for number in range(SLOTS):
            name = f"{FOLDER}/slot-{number}"
            if f"{name}/{STATE}" not in {item.path for item in client.list_artifacts(run_id, name)}:
                continue  # not written yet, or its first copy cut short
            destination = Path(staging, "states", str(number))
            destination.mkdir(parents=True)
            path = client.download_artifacts(run_id, f"{name}/{STATE}", str(destination))
            state = json.loads(Path(path).read_text())
            if state.get("fingerprint") == fingerprint:
                states[name] = state
        if not states:
            return False
        name, state = max(states.items(), key=lambda item: item[1]["epoch"])
        Path(staging, "slot").mkdir()
        downloaded = client.download_artifacts(run_id, name, str(Path(staging, "slot")))
        shutil.rmtree(checkpoints, ignore_errors=True)  # stale: this training could not resume it
        Path(downloaded).rename(checkpoints)
    print(
        f"train: fetched the checkpoint of epoch {state['epoch']} from MLflow run {run_id} ({name}), "
        "kept by an interrupted training of these params, data and code",
        flush=True,
    )
    return True
