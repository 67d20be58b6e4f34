"""The training flow: every pipeline stage as a Prefect task, run through DVC in order.

Run it with `make flow` or `python -m flows.training`; deployed with a weekly schedule by
`flows/deployments.py`; watch it in the Prefect UI.
"""

from __future__ import annotations

import sys

from prefect import flow, runtime

from mlproject.cli import STAGES
from mlproject.workspace import one_run_at_a_time, params_for_this_run
from tasks.stages import (publish_links, publish_metrics, publish_params, publish_promotion,
                          publish_scrape_report, run_stage)

# The web fails transiently; the other stages fail for reasons a retry does not mend.
RUNNERS = {"scrape": run_stage.with_options(retries=2, retry_delay_seconds=30)}


@flow(name="training", log_prints=True)
def training_flow(repo_dir: str = ".", preset: str | None = None, epochs: int | None = None,
                  sources: list[dict] | None = None, prompts_file: str | None = None) -> dict[str, str]:
    """Each stage's outcome: 'ran' or 'skipped' (DVC found nothing changed). A preset (from
    presets/), `epochs`, the corpus `sources` and the `prompts_file` override params.yaml for
    this run only; one run holds the workspace at a time."""
    with (one_run_at_a_time(repo_dir, f"flow run {runtime.flow_run.name or 'training'}"),
          params_for_this_run(repo_dir, preset, epochs=epochs, sources=sources, prompts_file=prompts_file) as changed):
        publish_params(changed)
        # Through the final state, so a stage that DVC skipped reads 'skipped' (and fails still raise).
        outcomes = {stage: RUNNERS.get(stage, run_stage)(stage, repo_dir, return_state=True).result()
                    for stage in STAGES}
        publish_scrape_report(repo_dir)
        publish_metrics(repo_dir)
        publish_promotion(repo_dir)
        publish_links(repo_dir)
    return outcomes


if __name__ == "__main__":
    training_flow(sys.argv[1] if len(sys.argv) > 1 else ".")
