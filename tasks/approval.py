"""A candidate awaiting approval (`promote.approval: required`): the training run pauses before
batch generation, with the comparison in the form the Prefect UI shows on its page, and the
answer goes through `mlproject approve|reject VERSION`, as a person's at the command line would.
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
from mlproject.tracking.promotion import AWAITING
from mlproject.workspace import Workspace


class Answer(RunInput):
    approve: bool = Field(False, title="Approve: let this version serve as champion (else it stays challenger)")


def await_approval(workspace: Workspace) -> str | None:
    """Where promote left the candidate awaiting approval: the run paused until a person answers in
    the Prefect UI, or its deadline (promote.approval_timeout) answers no; then the answer recorded.
    What it decided; None where no approval was asked."""
    params = load_params(workspace.path / "params.yaml")
    report = read_json(workspace.path / params.paths.promotion)
    if report["decision"] != AWAITING:
        return None
    version = report["candidate_version"]
    logger = get_run_logger()
    logger.info(f"version {version} awaits approval: Resume this run in the Prefect UI and answer its form")
    form = Answer.with_initial_data(description=approval_form(workspace, params, report), approve=False)
    # The deadline answers no from here: the server fails a pause that outlives its own timeout,
    # which is only a backstop (the whole run would fail, and generation would not run).
    left = max((datetime.fromisoformat(report["approval_deadline"]) - datetime.now(timezone.utc)).total_seconds(), 0)
    deadline = threading.Timer(left + 1, answer_no, [runtime.flow_run.id])
    deadline.start()
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=int(left) + BACKSTOP_SECONDS, key=f"approval-{version}")
    finally:
        deadline.cancel()
    return answer_task("approve" if answer.approve else "reject", version, str(workspace.path), workspace.env)


# How long past the deadline the server keeps the pause, should the deadline's own answer not land.
BACKSTOP_SECONDS = 300


def answer_no(flow_run_id) -> None:
    """The deadline's answer, unless a person's came first."""
    try:
        resume_flow_run(flow_run_id, run_input={"approve": False})
    except NotPausedError:  # answered meanwhile
        pass


@task(task_run_name="{command} {version}")
def answer_task(command: str, version: str, workspace: str, env: dict[str, str]) -> str:
    """`mlproject approve|reject VERSION` in the run's workspace; its one line."""
    by = f"a person in the Prefect UI (flow run {runtime.flow_run.name})"
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
    if done.returncode != 0 and not said.startswith(f"{command}: "):
        raise StageFailed(said)
    return said


def approval_form(workspace: Workspace, params, report: dict) -> str:
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
        lines.append(
            f"| difference, {difference['confidence']:.0%} interval | {difference['bits_per_byte']:+.4f} "
            f"[{difference['low']:+.4f}, {difference['high']:+.4f}] | |"
        )
    lines += ["", f"What it writes: {words(report.get('writing'))}", ""]
    theirs = champion_samples(workspace, params, champion)
    lines += ["| prompt | temperature | candidate | champion |", "|---|---|---|---|"]
    for sample in read_jsonl(workspace.path / params.paths.samples):
        key = (sample["prompt"], float(sample["temperature"]))
        lines.append(
            f"| {cell(sample['prompt'])} | {sample['temperature']} | {cell(sample['text'])} | "
            f"{cell(theirs.get(key, ''))} |"
        )
    return "\n".join(lines)


def champion_samples(workspace: Workspace, params, version: str | None) -> dict:
    """The champion's samples as its run logged them (samples.json), by prompt and temperature."""
    if version is None:
        return {}
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlproject.tracking.registry import store_uri

    uri = workspace.env.get("MLFLOW_TRACKING_URI") or store_uri(params.mlflow)
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
