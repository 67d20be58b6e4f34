"""Prefect tasks that run a DVC stage and publish what a person wants to see.

DVC decides whether a stage runs (its inputs, params or code changed) and records it in dvc.lock;
these tasks only stream its log into Prefect and show a skipped stage as `Skipped`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed

from mlproject.config import load_params
from mlproject.fileio import read_json
from mlproject.workspace import Workspace, open_workspace, stage_command


@task(task_run_name="{stage}")
def run_stage(stage: str, repo_dir: str, env: dict[str, str] | None = None) -> str:
    """The stage in its run's workspace: restored from the DVC remote or run (`dvc repro --pull`),
    then pushed with its run-cache; both commands' output streamed to the Prefect log."""
    logger = get_run_logger()
    # The stage commands (`mlproject ...`) live beside this interpreter, activated or not; the
    # flow run's id and page reach the MLflow run as tags (mlproject.tracking.registry).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLPROJECT_FLOW_RUN_ID": runtime.flow_run.id or "", "MLPROJECT_FLOW_RUN_URL": runtime.flow_run.ui_url or "",
           **(env or {})}
    skipped = False
    process = subprocess.Popen(stage_command(stage), cwd=repo_dir, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    last_lines = deque(maxlen=10)
    for line in process.stdout:
        logger.info(line.rstrip())
        last_lines.append(line.rstrip())
        skipped = skipped or any(f"Stage '{stage}' {words}" in line for words in SKIPPED)
    if process.wait() != 0:
        # The state message is what the UI shows of a failed task: its last words, not just a status.
        tail = " | ".join(line for line in last_lines if line.strip())
        raise RuntimeError(f"stage {stage} failed (exit status {process.returncode}): {tail}")
    if skipped:
        return Completed(name="Skipped", message="unchanged inputs, params and code, or restored from the "
                         "DVC remote's run-cache", data="skipped")
    return "ran"


# What DVC prints of a stage it did not run: nothing changed here, or a run anywhere made it.
SKIPPED = ("didn't change, skipping", "is cached - skipping run")


@task
def open_run_workspace(repo_dir: str, name: str, preset: str | None, values: list[str] | None,
                       epochs: int | None, sources: list[dict] | None, prompts_file: str | None) -> Workspace:
    workspace = open_workspace(repo_dir, name, preset, values, epochs=epochs, sources=sources,
                               prompts_file=prompts_file)
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
    rows = [{"source": r["source"], "url": r["url"], "outcome": r["outcome"], "reason": r["reason"],
             "word recall": f"{r['body_words_found'] / r['body_words']:.2%}" if r.get("body_words") else "",
             "characters kept": r.get("kept_chars", ""), "characters dropped": r.get("dropped_chars", "")}
            for r in report["pages"]] or [{"source": name, "url": "(local files)", "outcome": "read",
                                           "reason": f"{s['documents']} documents"}
                                          for name, s in report["sources"].items()]
    recall = "".join(f"; {name}: word recall {s['word_recall']:.2%}" for name, s in report["sources"].items()
                     if "word_recall" in s)
    create_table_artifact(key="scrape-report", table=rows,
                          description=f"{report['documents']} documents{recall}; every URL with its outcome")


@task
def publish_metrics(repo_dir: str) -> None:
    metrics = read_json(Path(repo_dir) / load_params(Path(repo_dir) / "params.yaml").paths.metrics)
    rows = [{"metric": key, "value": value} for key, value in metrics.items()]
    create_table_artifact(key="validation-metrics", table=rows,
                          description="Validation figures of the model trained in this run")


@task
def publish_promotion(repo_dir: str) -> None:
    report = read_json(Path(repo_dir) / load_params(Path(repo_dir) / "params.yaml").paths.promotion)
    lines = [f"# Promotion: version {report['candidate_version']} {report['decision']}", "",
             f"{report['reason']}", "", "| | version | bits per byte |", "|---|---|---|",
             f"| candidate | {report['candidate_version']} | {report['candidate_bits_per_byte']} |",
             f"| champion before | {report['champion_version']} | {report['champion_bits_per_byte']} |",
             "", f"Champion now: version {report['champion_now'] or 'none'}."]
    create_markdown_artifact(key="promotion", markdown="\n".join(lines),
                             description="Whether the new model became champion, and why")


@task
def publish_params(changed: list[str]) -> None:
    lines = ["# Params of this run", "", "Changed in this run's workspace only (its dvc.lock and the "
             "MLflow run record them; the checkout it came from is never written):", ""] + [f"- `{line}`" for line in changed or ["none: params.yaml as it is"]]
    create_markdown_artifact(key="run-params", markdown="\n".join(lines),
                             description="The flow's parameters that overrode params.yaml")


@task
def publish_links(repo_dir: str, tracking_uri: str | None = None) -> None:
    """Links to the MLflow run and the registered version this run stands for."""
    from mlproject.tracking.registry import store_uri, ui_links

    params = load_params(Path(repo_dir) / "params.yaml")
    record = read_json(Path(repo_dir) / params.paths.registered)
    # Not connect(): in the flow's process, that would point every later MLflow call there.
    links = ui_links(record, tracking_uri or store_uri(params.mlflow))
    markdown = (f"# MLflow\n\n- [training run {record['run_id']}]({links['run']})\n"
                f"- [{record['model_name']} version {record['version']}]({links['version']})\n")
    create_markdown_artifact(key="mlflow", markdown=markdown, description="The run and model version in MLflow")
