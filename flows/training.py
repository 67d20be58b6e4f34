"""The training flow: every pipeline stage as a Prefect task, run through DVC in order, in a
workspace of the run's own; train and evaluate on the GPU work pool where `train.runner` says so.

Run it with `make flow` or `python -m flows.training`; deployed with a weekly schedule by
`flows/deployments.py`; watch it in the Prefect UI.
"""

from __future__ import annotations

import subprocess
import sys

from prefect import flow, runtime

from mlproject.cli import STAGES
from tasks.approval import await_answer, awaiting
from tasks.stages import (
    open_run_workspace,
    publish_links,
    publish_metrics,
    publish_params,
    publish_promotion,
    publish_scrape_report,
    record_run,
    run_pipeline,
    run_stage,
)


@flow(name="training", log_prints=True)
def training_flow(
    repo_dir: str = ".",
    preset: str | None = None,
    epochs: int | None = None,
    sources: list[dict] | None = None,
    prompts_file: str | None = None,
    values: list[str] | None = None,
) -> dict:
    """The run's workspace and each stage's outcome ('ran'; 'skipped': unchanged or restored from
    the DVC remote; 'restored': run on the GPU pool, then restored here). The run clones `repo_dir`'s
    commit into a workspace of its own; a preset (from presets/), `epochs`, the corpus `sources`,
    the `prompts_file` and `values` (section.key=value) override its params.yaml there only."""
    overrides = {"preset": preset, "epochs": epochs, "sources": sources, "prompts_file": prompts_file, "values": values}
    workspace = open_run_workspace(repo_dir, runtime.flow_run.name or "training", **overrides)
    publish_params(workspace.changed)
    # A candidate awaiting approval (promote.approval) is answered before batch generation.
    serving = STAGES.index("generate")
    outcomes = run_pipeline(workspace, STAGES[:serving], overrides)
    version = awaiting(str(workspace.path))
    answer = approval_flow(str(workspace.path), workspace.env, version, runtime.flow_run.name) if version else None
    outcomes |= run_pipeline(workspace, STAGES[serving:], overrides)
    record_run(workspace)
    publish_scrape_report(str(workspace.path))
    publish_metrics(str(workspace.path))
    publish_promotion(str(workspace.path), answer)
    publish_links(str(workspace.path), workspace.env.get("MLFLOW_TRACKING_URI"))
    return {"workspace": str(workspace.path), "commit": workspace.commit, "stages": outcomes}


@flow(name="approval", flow_run_name="approval of version {version}", log_prints=True)
def approval_flow(repo_dir: str, env: dict[str, str], version: str, training_run: str) -> str:
    """Paused until a person answers whether `version`, awaiting approval, may serve (tasks/approval.py)."""
    return await_answer(repo_dir, env, training_run)


@flow(name="training-stages", log_prints=True)
def training_stages_flow(
    repo_dir: str,
    commit: str,
    stages: list[str],
    lineage: dict[str, str],
    preset: str | None = None,
    epochs: int | None = None,
    sources: list[dict] | None = None,
    prompts_file: str | None = None,
    values: list[str] | None = None,
) -> dict:
    """Some stages of a training run, on the work pool this flow is deployed to (the GPU's): in a
    workspace of this worker's own at the run's `commit` and overrides. The stages before them
    are restored from the DVC remote; these run and go to it, where the training run picks them
    up. `lineage` is the training run's id, page and MLflow store, for the runs these stages log."""
    workspace = open_run_workspace(
        repo_dir,
        runtime.flow_run.name or "training-stages",
        preset=preset,
        epochs=epochs,
        sources=sources,
        prompts_file=prompts_file,
        values=values,
        commit=commit,
    )
    env = {**workspace.env, **lineage}
    return {
        stage: run_stage(stage, str(workspace.path), env, return_state=True).result()
        for stage in STAGES[: STAGES.index(stages[-1]) + 1]
    }


if __name__ == "__main__":
    result = training_flow(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(f"\nThe run's workspace: {result['workspace']} (commit {result['commit'][:10]}); the paths below are in it.")
    subprocess.run([sys.executable, "-m", "mlproject.cli", "summary"], cwd=result["workspace"], check=True)
