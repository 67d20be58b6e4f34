"""The training flow: every pipeline stage as a Prefect task, run through DVC in order, in a
workspace of the run's own.

Run it with `make flow` or `python -m flows.training`; deployed with a weekly schedule by
`flows/deployments.py`; watch it in the Prefect UI.
"""

from __future__ import annotations

import subprocess
import sys

from prefect import flow, runtime

from mlproject.cli import STAGES
from tasks.stages import (open_run_workspace, publish_links, publish_metrics, publish_params, publish_promotion,
                          publish_scrape_report, record_run, run_stage)

# The web fails transiently; the other stages fail for reasons a retry does not mend.
RUNNERS = {"scrape": run_stage.with_options(retries=2, retry_delay_seconds=30)}


@flow(name="training", log_prints=True)
def training_flow(repo_dir: str = ".", preset: str | None = None, epochs: int | None = None,
                  sources: list[dict] | None = None, prompts_file: str | None = None,
                  values: list[str] | None = None) -> dict:
    """The run's workspace and each stage's outcome ('ran', or 'skipped': unchanged or restored
    from the DVC remote). The run clones `repo_dir`'s commit into a workspace of its own; a preset
    (from presets/), `epochs`, the corpus `sources`, the `prompts_file` and `values`
    (section.key=value) override its params.yaml there only."""
    workspace = open_run_workspace(repo_dir, runtime.flow_run.name or "training", preset, values,
                                   epochs, sources, prompts_file)
    publish_params(workspace.changed)
    # Through the final state, so a stage that DVC skipped reads 'skipped' (and fails still raise).
    outcomes = {stage: RUNNERS.get(stage, run_stage)(stage, str(workspace.path), workspace.env,
                                                     return_state=True).result()
                for stage in STAGES}
    record_run(workspace)
    publish_scrape_report(str(workspace.path))
    publish_metrics(str(workspace.path))
    publish_promotion(str(workspace.path))
    publish_links(str(workspace.path), workspace.env.get("MLFLOW_TRACKING_URI"))
    return {"workspace": str(workspace.path), "commit": workspace.commit, "stages": outcomes}


if __name__ == "__main__":
    result = training_flow(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(f"\nThe run's workspace: {result['workspace']} (commit {result['commit'][:10]}); the paths below are in it.")
    subprocess.run([sys.executable, "-m", "mlproject.cli", "summary"], cwd=result["workspace"], check=True)
