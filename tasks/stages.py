"""Prefect tasks that run a DVC stage and publish what a person wants to see.

DVC decides whether a stage runs (its inputs, params or code changed) and records it in dvc.lock;
these tasks only stream its log into Prefect and show a skipped stage as `Skipped`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from infra.servers import GPU_POOL
from mlproject.config import StageFailed, load_params
from mlproject.fileio import read_json
from mlproject.models import WANT_A_GPU
from mlproject.workspace import Workspace, last_words, open_workspace, stage_command


@task(task_run_name="{stage}")
def run_stage(stage: str, repo_dir: str, env: dict[str, str] | None = None, ran_in: str | None = None) -> str:
    """The stage in its run's workspace: restored from the DVC remote or run (`dvc repro --pull`),
    then pushed with its run-cache; the output streamed to the Prefect log. `ran_in`: the flow
    run on another pool that ran it, so here it is restored."""
    logger = get_run_logger()
    # The stage commands (`mlproject ...`) live beside this interpreter, activated or not; the
    # flow run's id and page reach the MLflow run as tags (mlproject.tracking.registry).
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLPROJECT_FLOW_RUN_ID": runtime.flow_run.id or "",
        "MLPROJECT_FLOW_RUN_URL": runtime.flow_run.ui_url or "",
        **(env or {}),
    }
    skipped = False
    process = subprocess.Popen(
        stage_command(stage), cwd=repo_dir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    last_lines = deque(maxlen=40)
    for line in process.stdout:
        logger.info(line.rstrip())
        last_lines.append(line.rstrip())
        skipped = skipped or any(f"Stage '{stage}' {words}" in line for words in SKIPPED)
    if process.wait() != 0:
        # The state message is what the UI and the failure webhook show: the stage's one line of why.
        why = last_words("\n".join(last_lines))
        raise StageFailed(f"stage {stage} failed: {why}")
    if skipped and ran_in:
        return Completed(
            name="Restored", message=f"ran in {ran_in}; restored here from the DVC remote", data="restored"
        )
    if skipped:
        return Completed(
            name="Skipped",
            message="unchanged inputs, params and code, or restored from the DVC remote's run-cache",
            data="skipped",
        )
    return "ran"


# The web fails transiently; the other stages fail for reasons a retry does not mend.
RUNNERS = {"scrape": run_stage.with_options(retries=2, retry_delay_seconds=30)}

# On the GPU pool when `train.runner` sends them there: evaluate scores with the model's framework
# on the hardware it was trained on. They run there as the flow `training-stages`.
GPU_STAGES = ("train", "evaluate")
GPU_DEPLOYMENT = f"training-stages/{GPU_POOL}"


def pool_with_a_worker(deployment: str) -> str | None:
    """The work pool of `deployment` if it is deployed and a worker of that pool is online."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkPoolStatus
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_deployment_by_name(deployment).work_pool_name
        except ObjectNotFound:
            return None
        return pool if pool and client.read_work_pool(pool).status == WorkPoolStatus.READY else None


@task
def gpu_deployment(repo_dir: str) -> str | None:
    """The deployment that runs GPU_STAGES of this run, or None to run every stage here."""
    train = load_params(Path(repo_dir) / "params.yaml").train
    logger = get_run_logger()
    if train.runner == "cpu" or (train.runner == "auto" and train.kind not in WANT_A_GPU):
        return None
    if runtime.deployment.id is None:
        logger.info(f"train.runner = {train.runner}: this run is not deployed, so every stage runs here")
        return None
    pool = pool_with_a_worker(GPU_DEPLOYMENT)
    if pool is None and train.runner == "gpu":
        raise StageFailed(
            f"train.runner = gpu: no worker serves the deployment {GPU_DEPLOYMENT} (deploy it with "
            f"python -m flows.deployments and start a worker of pool {GPU_POOL}), or set train.runner "
            "to cpu or auto"
        )
    if pool is None:
        logger.info(f"train.runner = auto: no worker serves {GPU_DEPLOYMENT}, so {train.kind} trains here")
        return None
    logger.info(f"{', '.join(GPU_STAGES)} run on pool {pool} ({GPU_DEPLOYMENT}), the other stages here")
    return GPU_DEPLOYMENT


# Flow runs of the GPU stages that may crash (their worker, pod or node gone: a preempted spot
# node) before the training run gives up; each rerun resumes from the last checkpoint in MLflow.
RERUNS_AFTER_A_CRASH = 2


@task(task_run_name="{deployment}")
def run_elsewhere(
    deployment: str, workspace: Workspace, overrides: dict, env: dict[str, str] | None = None
) -> tuple[str, list[str]]:
    """GPU_STAGES as a flow run of `deployment`, with this run's commit and overrides (and `env`
    beside its workspace's, for their stages); what they make reaches this run through the DVC
    remote. A flow run that crashed is run again, on whichever worker of the pool is alive. The
    flow run, in words, and the stages it ran (not restored there too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    lineage = {
        "MLPROJECT_FLOW_RUN_ID": str(runtime.flow_run.id or ""),
        "MLPROJECT_FLOW_RUN_URL": runtime.flow_run.ui_url or "",
        **{k: v for k, v in workspace.env.items() if k == "MLFLOW_TRACKING_URI"},
        **(env or {}),
    }
    for attempt in range(1 + RERUNS_AFTER_A_CRASH):
        run = run_deployment(
            deployment,
            parameters={"commit": workspace.commit, "stages": list(GPU_STAGES), "lineage": lineage, **overrides},
            timeout=None,
        )
        if not run.state.is_crashed() or attempt == RERUNS_AFTER_A_CRASH:
            break
        get_run_logger().warning(
            f"flow run {run.name} of {deployment} crashed ({run.state.message}); running "
            "it again on a live worker, which resumes training from its last checkpoint"
        )
    if not run.state.is_completed():
        raise StageFailed(
            f"{', '.join(GPU_STAGES)} on {deployment}: flow run {run.name} ended {run.state.name}: {run.state.message}"
        )
    with get_client(sync_client=True) as client:
        there = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    ran = [t.name for t in there if t.name in GPU_STAGES and t.state.name == "Completed"]
    return f"flow run {run.name} of {deployment} (pool {run.work_pool_name})", ran


def run_pipeline(
    workspace: Workspace,
    stages: Sequence[str],
    overrides: dict,
    env: dict[str, str] | None = None,
    label: str | None = None,
) -> dict[str, str]:
    """`stages` of a run, in order, in its workspace (with `env` beside the workspace's), their task
    runs named `stage (label)` where a label tells runs of one flow apart: train and evaluate as a
    flow run on the GPU pool where `train.runner` says so, the others here. Each
    stage's outcome: 'ran'; 'skipped' (unchanged, or restored from the DVC remote); 'restored' (run
    on the GPU pool, then restored here from the DVC remote, like any stage a run made before)."""
    env = env or {}
    elsewhere = gpu_deployment(str(workspace.path)) if set(stages) & set(GPU_STAGES) else None
    outcomes, ran_in, ran_there = {}, None, []
    for stage in stages:
        if elsewhere and stage == GPU_STAGES[0]:
            ran_in, ran_there = run_elsewhere(elsewhere, workspace, overrides, env)
        placed = elsewhere and stage in ran_there  # else restored there too: `Skipped` here
        runner = RUNNERS.get(stage, run_stage)
        if label:
            runner = runner.with_options(task_run_name=f"{stage} ({label})")
        # Through the final state, so a stage that DVC skipped reads 'skipped' (and fails still raise).
        outcomes[stage] = runner(
            stage, str(workspace.path), {**workspace.env, **env}, ran_in if placed else None, return_state=True
        ).result()
    return outcomes


# What DVC prints of a stage it did not run: nothing changed here, or a run anywhere made it.
SKIPPED = ("didn't change, skipping", "is cached - skipping run")


@task
def open_run_workspace(
    repo_dir: str,
    name: str,
    preset: str | None,
    values: list[str] | None,
    epochs: int | None,
    sources: list[dict] | None,
    prompts_file: str | None,
    commit: str | None = None,
) -> Workspace:
    workspace = open_workspace(
        repo_dir, name, preset, values, commit, epochs=epochs, sources=sources, prompts_file=prompts_file
    )
    logger = get_run_logger()
    logger.info(f"workspace {workspace.path}: commit {workspace.commit[:10]} of {Path(repo_dir).resolve()}")
    if workspace.left_out:
        logger.warning(f"{Path(repo_dir).resolve()} has uncommitted changes: this run has the commit without them")
    return workspace


@task
def record_run(workspace: Workspace) -> None:
    """The run's dvc.lock and overrides beside its MLflow run: what ran on which data, after the
    workspace is gone."""
    from mlproject.tracking.registry import record_workspace

    record_workspace(workspace.path, workspace.env.get("MLFLOW_TRACKING_URI"), runtime.flow_run.id or "by-hand")


@task
def publish_scrape_report(repo_dir: str) -> None:
    report = read_json(Path(repo_dir) / load_params(Path(repo_dir) / "params.yaml").paths.scrape_report)
    rows = [
        {
            "source": r["source"],
            "url": r["url"],
            "outcome": r["outcome"],
            "reason": r["reason"],
            "word recall": f"{r['body_words_found'] / r['body_words']:.2%}" if r.get("body_words") else "",
            "characters kept": r.get("kept_chars", ""),
            "characters dropped": r.get("dropped_chars", ""),
        }
        for r in report["pages"]
    ] or [
        {"source": name, "url": "(local files)", "outcome": "read", "reason": f"{s['documents']} documents"}
        for name, s in report["sources"].items()
    ]
    recall = "".join(
        f"; {name}: word recall {s['word_recall']:.2%}" for name, s in report["sources"].items() if "word_recall" in s
    )
    create_table_artifact(
        key="scrape-report",
        table=rows,
        description=f"{report['documents']} documents{recall}; every URL with its outcome",
    )


@task
def publish_metrics(repo_dir: str) -> None:
    metrics = read_json(Path(repo_dir) / load_params(Path(repo_dir) / "params.yaml").paths.metrics)
    writing = {f"writing.{key}": value for key, value in metrics.pop("writing", {}).items()}
    rows = [{"metric": key, "value": value} for key, value in {**metrics, **writing}.items()]
    create_table_artifact(
        key="validation-metrics", table=rows, description="Validation figures of the model trained in this run"
    )


@task
def publish_promotion(repo_dir: str, answer: str | None = None) -> None:
    """The promotion's figures and decision; `answer`: the approval's, where one was asked."""
    report = read_json(Path(repo_dir) / load_params(Path(repo_dir) / "params.yaml").paths.promotion)
    lines = [
        f"# Promotion: version {report['candidate_version']} {report['decision']}",
        "",
        f"{report['reason']}",
        "",
        "| | version | bits per byte |",
        "|---|---|---|",
        f"| candidate | {report['candidate_version']} | {report['candidate_bits_per_byte']} |",
        f"| champion before | {report['champion_version']} | {report['champion_bits_per_byte']} |",
        "",
        *difference_lines(report.get("difference")),
        *([f"Approval: {answer}", ""] if answer else []),
        f"Champion now: version {report['champion_now'] or 'none'}." if not answer else "",
    ]
    create_markdown_artifact(
        key="promotion", markdown="\n".join(lines), description="Whether the new model became champion, and why"
    )


def difference_lines(difference: dict | None) -> list[str]:
    if not difference:
        return []
    return [
        f"Candidate minus champion: **{difference['bits_per_byte']:+.4f}** bits per byte, "
        f"{difference['confidence']:.0%} interval [{difference['low']:+.4f}, {difference['high']:+.4f}] "
        f"(a paired bootstrap over {difference['documents']:,} validation documents, "
        f"{difference['resamples']:,} resamples).",
        "",
    ]


@task
def publish_params(changed: list[str]) -> None:
    lines = [
        "# Params of this run",
        "",
        "Changed in this run's workspace only (its dvc.lock and the "
        "MLflow run record them; the checkout it came from is never written):",
        "",
    ] + [f"- `{line}`" for line in changed or ["none: params.yaml as it is"]]
    create_markdown_artifact(
        key="run-params", markdown="\n".join(lines), description="The flow's parameters that overrode params.yaml"
    )


@task
def publish_links(repo_dir: str, tracking_uri: str | None = None) -> None:
    """Links to the MLflow run and the registered version this run stands for."""
    from mlproject.tracking.registry import store_uri, ui_links

    params = load_params(Path(repo_dir) / "params.yaml")
    record = read_json(Path(repo_dir) / params.paths.registered)
    # Not connect(): in the flow's process, that would point every later MLflow call there.
    links = ui_links(record, tracking_uri or store_uri(params.mlflow))
    markdown = (
        f"# MLflow\n\n- [training run {record['run_id']}]({links['run']})\n"
        f"- [{record['model_name']} version {record['version']}]({links['version']})\n"
    )
    create_markdown_artifact(key="mlflow", markdown=markdown, description="The run and model version in MLflow")
