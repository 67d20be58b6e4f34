"""The sweep flow: `mlproject sweep` as a Prefect flow, each trial a task run and its stages task
runs inside it, train and evaluate on the GPU pool's workers where `train.runner` says so (as for a
training run), the report a table artifact. Deployed beside training/weekly by `flows/deployments.py`,
run on demand: `prefect deployment run sweep/on-demand --param name=char-rnn-size`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlproject.config import StageFailed
from mlproject.search.study import storage_url
from mlproject.search.sweep import TRIAL_STAGES, Outcome, run_sweep, run_trial
from mlproject.search.sweep_file import load_sweep
from mlproject.workspace import Workspace, runs_dir
from tasks.stages import run_pipeline

# A trial's arguments are the live study and trial: nothing to cache a trial by.
trial_task = task(run_trial, name="trial", task_run_name="trial {trial.number}", cache_policy=NO_CACHE)


def stages_as_tasks(name: str, workspace: Workspace, overrides: dict, env: dict, say) -> None:
    """A trial's stages as the training flow runs them: each a task run (`train (trial 3)`), train
    and evaluate on the GPU pool's workers where `train.runner` says so."""
    try:
        run_pipeline(workspace, TRIAL_STAGES, overrides, env, label=name)
    except Exception as error:  # a failed stage, or its flow run on the GPU pool: the trial's reason
        raise StageFailed(str(error)) from error


def run_one(*trial) -> Outcome:
    return trial_task(*trial, stages=stages_as_tasks)


@flow(name="sweep", log_prints=True)
def sweep_flow(repo_dir: str = ".", name: str = "char-rnn-size", storage: str | None = None) -> dict:
    """Run the sweep file `name` of `repo_dir` (its sweeps/ folder). The study lives in `storage`
    (default: MLPROJECT_SWEEP_STORAGE, which the team's servers give their workers, else sweeps.db
    in this worker's runs folder), the report in that folder: the checkout a run starts from is
    never written."""
    repo = Path(repo_dir).resolve()
    sweep = load_sweep(name, repo / "params.yaml", repo / "sweeps")
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    report = run_sweep(
        sweep,
        repo,
        storage_url(storage, default=f"sqlite:///{folder / 'sweeps.db'}"),
        folder / f"sweep-{sweep.name}.json",
        run_one=run_one,
    )
    create_table_artifact(
        key=f"sweep-{sweep.name}",
        table=[
            {
                "trial": row["trial"],
                "state": row["state"],
                "bits per byte": row["bits_per_byte"],
                **{key: str(value) for key, value in row["values"].items()},
                "reason": row["reason"],
            }
            for row in report["trials"]
        ],
        description=f"sweep {sweep.name}: the best, trial {report['best']['trial']}, "
        f"-> {report['promotion']['decision']}: {report['promotion']['reason']}",
    )
    return report


if __name__ == "__main__":
    sweep_flow(".", sys.argv[1] if len(sys.argv) > 1 else "char-rnn-size")
