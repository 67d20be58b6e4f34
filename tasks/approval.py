"""A candidate awaiting approval (`promote.approval: required`): before batch generation the
training run waits on a flow run `approval` that pauses, with the comparison in the form the
Prefect UI shows on its page; the answer goes through `mlproject approve|reject VERSION`, as a
person's at the command line would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, runtime, task
from prefect.exceptions import NotPausedError
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from pydantic import Field

from mlproject.config import StageFailed, load_params
from mlproject.fileio import read_json, read_jsonl
from mlproject.models.writing import words
from mlproject.tracking.paired_bootstrap import Difference
from mlproject.tracking.promotion import AWAITING


class Answer(RunInput):
    approve: bool = Field(False, title="Approve: let this version serve as champion (else it stays challenger)")


def awaiting(repo_dir: str) -> str | None:
    """The version promote left awaiting approval in this workspace; None where none was asked."""
    params = load_params(Path(repo_dir) / "params.yaml")
    report = read_json(Path(repo_dir) / params.paths.promotion)
    return report["candidate_version"] if report["decision"] == AWAITING else None


def await_answer(repo_dir: str, env: dict[str, str], training_run: str) -> str:
    """In a flow run of its own (a subflow: pausing the training run itself would give back its
    deployment's concurrency slot, and the server would end it): paused until a person answers
    its form in the Prefect UI, the version is answered at the command line meanwhile, or its
    deadline (promote.approval_timeout) answers no; then the answer recorded. What it decided."""
    workspace = Path(repo_dir)
    params = load_params(workspace / "params.yaml")
    report = read_json(workspace / params.paths.promotion)
    version = report["candidate_version"]
    get_run_logger().info(f"version {version} awaits approval: Resume this run in the Prefect UI and answer its form")
    form = Answer.with_initial_data(description=approval_form(workspace, env, params, report), approve=False)
    deadline = datetime.fromisoformat(report["approval_deadline"])
    answered = threading.Event()
    watcher = threading.Thread(
        target=answer_no_when_due,
        args=(runtime.flow_run.id, deadline, lambda: still_awaiting(env, params, version), answered),
        daemon=True,
    )
    watcher.start()
    try:
        # The server's own pause timeout is only a backstop: it fails the run.
        left = max((deadline - datetime.now(timezone.utc)).total_seconds(), 0)
        answer = pause_flow_run(wait_for_input=form, timeout=int(left) + BACKSTOP_SECONDS, key=f"approval-{version}")
    finally:
        answered.set()
    by = f"a person in the Prefect UI (training run {training_run})"
    return answer_task("approve" if answer.approve else "reject", version, by, repo_dir, env)


# How long past the deadline the server keeps the pause, should the deadline's own answer not land.
BACKSTOP_SECONDS = 300
WATCH_SECONDS = 5


def answer_no_when_due(flow_run_id, deadline: datetime, pending, answered: threading.Event) -> None:
    """Resume the paused run with "no" once the deadline passed or the version is no longer pending
    (answered at the command line, or superseded), unless a person's answer came first."""
    while not answered.wait(WATCH_SECONDS):
        if datetime.now(timezone.utc) <= deadline and pending():
            continue
        try:
            resume_flow_run(flow_run_id, run_input={"approve": False})
            return
        except NotPausedError:  # not paused yet, or answered meanwhile: look again
            pass


def still_awaiting(env: dict[str, str], params, version: str) -> bool:
    from mlflow import MlflowClient

    from mlproject.tracking.registry import PENDING_TAG, store_uri

    uri = env.get("MLFLOW_TRACKING_URI") or store_uri(params.mlflow)
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(params.mlflow.model_name)
    return model.tags.get(PENDING_TAG) == version


@task(task_run_name="{command} {version}")
def answer_task(command: str, version: str, by: str, workspace: str, env: dict[str, str]) -> str:
    """`mlproject approve|reject VERSION --by BY` in the run's workspace; its one line."""
    done = subprocess.run(
        [sys.executable, "-m", "mlproject.cli", command, version, "--by", by],
        cwd=workspace,
        env={**os.environ, **env},
        text=True,
        capture_output=True,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    get_run_logger().info("\n".join(lines))
    said = next((line for line in lines if line.startswith(f"{command}: ")), lines[-1] if lines else "no output")
    if "is not awaiting approval" in said:  # answered at the command line meanwhile, or superseded
        return f"version {version} was no longer awaiting approval here: {said}"
    if done.returncode != 0 and not said.startswith(f"{command}: "):
        raise StageFailed(said)
    return said


def approval_form(workspace: Path, env: dict[str, str], params, report: dict) -> str:
    """The comparison a person answers on: the figures, the interval, what each model writes."""
    champion = report["champion_version"]
    difference = report.get("difference")
    lines = [
        f"### Version {report['candidate_version']} of {report['model_name']} awaits your approval",
        "",
        report["reason"],
        "",
        f"| | candidate: version {report['candidate_version']} | champion: version {champion or 'none'} |",
        "|---|---|---|",
        f"| bits per byte | {report['candidate_bits_per_byte']:.4f} | "
        f"{'' if report['champion_bits_per_byte'] is None else format(report['champion_bits_per_byte'], '.4f')} |",
    ]
    if difference:
        lines.append(f"| difference, {difference['confidence']:.0%} interval | {Difference(**difference).words()} | |")
    lines += ["", f"What it writes: {words(report.get('writing'))}", ""]
    theirs = champion_samples(env, params, champion)
    lines += ["| prompt | temperature | candidate | champion |", "|---|---|---|---|"]
    for sample in read_jsonl(workspace / params.paths.samples):
        key = (sample["prompt"], float(sample["temperature"]))
        lines.append(
            f"| {cell(sample['prompt'])} | {sample['temperature']} | {cell(sample['text'])} | "
            f"{cell(theirs.get(key, ''))} |"
        )
    return "\n".join(lines)


def champion_samples(env: dict[str, str], params, version: str | None) -> dict:
    """The champion's samples as its run logged them (samples.json), by prompt and temperature."""
    if version is None:
        return {}
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlproject.tracking.registry import store_uri

    uri = env.get("MLFLOW_TRACKING_URI") or store_uri(params.mlflow)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(params.mlflow.model_name, version).run_id
    with tempfile.TemporaryDirectory() as folder:
        try:
            table = json.loads(Path(client.download_artifacts(run_id, "samples.json", folder)).read_text())
        except (MlflowException, OSError):  # registered before its samples were logged
            return {}
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    return {(row["prompt"], float(row["temperature"])): row["text"] for row in rows}


def cell(text: str) -> str:
    """Text in a Markdown table cell: one line, no column breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")
