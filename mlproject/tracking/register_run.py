"""A training run through the promotion gate after the fact: `mlproject register --run ID`, and a
sweep's best trial. The run's pipeline is rebuilt in a workspace of its own (its commit, preset and
overrides, as the run's tags record them), every stage up to evaluate restored from the DVC remote,
then registered and promoted as any run is."""

from __future__ import annotations

import json
from pathlib import Path

from mlproject.config import RESTORE_ONLY, ConfigError, StageFailed, load_params
from mlproject.fileio import read_json
from mlproject.workspace import open_workspace, run_stages

MADE_BY_A_RUN = ("scrape", "validate", "tokenize", "train", "evaluate")
GATE_STAGES = (*MADE_BY_A_RUN, "register", "promote")


def through_the_gate(
    source: Path, name: str, preset: str | None, values: list[str], say, commit: str | None = None, env=None
) -> dict:
    """The pipeline of `commit` (default: the source's) with `preset` and `values`, up to promote,
    in a workspace `name`: {"registered": registered.json, "promotion": promotion.json}."""
    workspace = open_workspace(source, name, preset=preset, values=values, commit=commit)
    run_stages(GATE_STAGES, workspace.path, {**workspace.env, **(env or {})}, workspace.path / "gate.log", say)
    paths = load_params(workspace.path / "params.yaml").paths
    return {
        "registered": read_json(workspace.path / paths.registered),
        "promotion": read_json(workspace.path / paths.promotion),
        "training_run": read_json(workspace.path / paths.training_run)["run_id"],
    }


def assignments(overrides: dict, prefix: str = "") -> list[str]:
    """A run's recorded overrides ({"train": {"rnn": {"units": 24}}}) as section.key=value pairs."""
    pairs = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            pairs += assignments(value, f"{prefix}{key}.")
        else:
            pairs.append(f"{prefix}{key}={json.dumps(value)}")
    return pairs


def register_run(run_id: str, source: Path, tracking_uri: str, say=print) -> dict:
    """Register training run `run_id` of the store at `tracking_uri` and put it through promotion.
    Its stages must all be in the DVC remote: nothing is trained or scored again here."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--run {run_id}: no such run in {tracking_uri}") from None
    tags = run.data.tags
    if "model_kind" not in tags:
        raise ConfigError(
            f"--run {run_id}: not a training run (the train stage makes those; "
            "`mlproject compare --sweep NAME` lists a sweep's)"
        )
    if tags.get("git_commit", "unknown") == "unknown":
        raise ConfigError(f"--run {run_id}: the run records no commit to rebuild it from (trained before runs did)")
    overrides = json.loads(tags.get("run_overrides", "{}"))
    preset = overrides.pop("preset", None)
    values = assignments(overrides)
    say(
        f"register: run {run_id} ({tags['model_kind']}, commit {tags['git_commit'][:10]}"
        f"{', preset ' + preset if preset else ''}{', ' + ', '.join(values) if values else ''}): "
        "its stages restored from the DVC remote, then register and promote"
    )
    try:
        outcome = through_the_gate(
            source,
            f"register-{run_id[:12]}",
            preset,
            values,
            lambda words: say(f"  {words}"),
            commit=tags["git_commit"],
            env={RESTORE_ONLY: ",".join(MADE_BY_A_RUN)},
        )
    except StageFailed as error:
        raise StageFailed(f"--run {run_id}: {error}; nothing registered") from None
    if outcome["training_run"] != run_id:
        say(
            f"register: the DVC remote gave back run {outcome['training_run']}'s model, trained by the "
            f"same code, data and params as run {run_id}"
        )
    return outcome
