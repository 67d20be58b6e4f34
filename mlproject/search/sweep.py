"""Running a sweep: the stages every trial shares once, then trials side by side (each the pipeline
up to evaluate, in a workspace of its own), one MLflow parent run over their training runs, and the
best trial registered and put through the promotion gate like any run.

`mlproject sweep NAME` runs it here; the Prefect flow `sweep` runs the same on the team's workers.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna

from mlproject.config import StageFailed, load_params
from mlproject.fileio import read_json, write_json
from mlproject.search.study import finished, open_study, overrides, suggest
from mlproject.search.sweep_file import Sweep
from mlproject.tracking.register_run import MADE_BY_A_RUN, through_the_gate
from mlproject.tracking.trial import PRUNED_AT, TRIAL
from mlproject.workspace import Workspace, absolute_sqlite, open_workspace, run_stages

SHARED_STAGES = ("scrape", "validate", "tokenize")  # the same for every trial unless a trial varies them
TRIAL_STAGES = MADE_BY_A_RUN  # scrape up to evaluate
PARENT_RUN = "MLPROJECT_PARENT_RUN_ID"


@dataclass
class Outcome:
    number: int
    values: dict
    state: str  # complete, pruned or failed
    bits_per_byte: float | None = None
    run_id: str | None = None
    reason: str = ""
    seconds: float = 0.0


def run_sweep(
    sweep: Sweep,
    source: str | Path = ".",
    storage: str | None = None,
    report_path: str | Path | None = None,
    run_one: Callable[..., Outcome] | None = None,
) -> dict:
    """Run the sweep's trials until its budget is spent (resuming its study), register the best and
    put it through the promotion gate; write the report to `report_path` (default: the source's
    reports/sweep.json) and return it. `run_one` runs a trial, as run_trial (the flow's task)."""

    from mlflow import MlflowClient

    from mlproject.search.study import storage_url
    from mlproject.tracking.registry import connect

    source = Path(source).resolve()
    params = load_params(source / "params.yaml")
    storage = absolute_sqlite(storage_url(storage), source)  # the trials' stages run elsewhere
    study = open_study(sweep, params.seed, storage)
    connect(params.mlflow)
    started = time.monotonic()
    print(
        f"sweep {sweep.name}: {sweep.search} search, {sweep.trials} trials at most"
        f"{f', {sweep.minutes:g} minutes' if sweep.minutes else ''}, {sweep.parallelism} side by side; "
        f"study {study.study_name} in {storage} ({len(finished(study))} trials finished before)",
        flush=True,
    )
    parent = parent_run(sweep, study, params.mlflow.experiment)
    try:
        shared = open_workspace(source, f"sweep-{sweep.name}-shared", preset=sweep.preset)
        if shared.left_out:
            print(
                f"sweep {sweep.name}: {source} has uncommitted changes: the trials run its commit "
                f"{shared.commit[:10]} without them"
            )
        say = lambda words: print(f"  shared: {words}", flush=True)  # noqa: E731
        run_stages(SHARED_STAGES, shared.path, shared.env, shared.path / "sweep.log", say)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    spent = (time.monotonic() - started) / 60
                    running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
                    if len(finished(study)) + running >= sweep.trials or (sweep.minutes and spent >= sweep.minutes):
                        return
                    trial = study.ask()
                    values = suggest(trial, sweep)
                    trial.set_user_attr("values", values)
                outcome = (run_one or run_trial)(sweep, study, trial, values, source, parent, storage)
                with lock:
                    tell(study, trial, outcome)

        with ThreadPoolExecutor(max_workers=sweep.parallelism) as pool:
            # Each worker in a copy of this context: an orchestrator's run context reaches its trials.
            for future in [pool.submit(contextvars.copy_context().run, worker) for _ in range(sweep.parallelism)]:
                future.result()
        report = gate(sweep, study, source, parent, report_path or str(source / "reports" / "sweep.json"))
    except BaseException:
        MlflowClient().set_terminated(parent, "FAILED")  # killed outright, it stays RUNNING until resumed
        raise
    MlflowClient().set_terminated(parent, "FINISHED" if report["best"] else "FAILED")
    if not report["best"]:
        raise StageFailed(f"sweep {sweep.name}: every trial failed (the last: {report['last_failure']})")
    return report


def parent_run(sweep: Sweep, study: optuna.Study, experiment: str) -> str:
    """The sweep's MLflow run in `experiment`, the same one when it resumes (kept in its study),
    RUNNING until run_sweep ends it, as MLflow's UI shows it meanwhile."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient()
    run_id = study.user_attrs.get("mlflow_run_id")
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(
        client.get_experiment_by_name(experiment).experiment_id,
        tags={"sweep": sweep.name, "sweep_study": study.study_name},
        run_name=f"sweep {sweep.name}",
    )
    varied = {
        f"sweep.vary.{d.key}": list(d.choices) if d.choices else f"{d.low}..{d.high}{' log' if d.log else ''}"
        for d in sweep.dimensions
    }
    settings = {"search": sweep.search, "trials": sweep.trials, "parallelism": sweep.parallelism}
    logged = {**{f"sweep.{k}": v for k, v in settings.items()}, "sweep.preset": sweep.preset or "", **varied}
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in logged.items()])
    study.set_user_attr("mlflow_run_id", run.info.run_id)
    return run.info.run_id


# How a trial's stages run, given its name ("trial 3"), its workspace, its overrides (preset,
# values), the environment that makes its training a trial, and a way to say how each went: here,
# by stages_here (mlproject sweep), or as the sweep flow's tasks, train and evaluate on the GPU pool
# where `train.runner` says so.
StageRunner = Callable[[str, Workspace, dict, dict, Callable[[str], None]], None]


def stages_here(name: str, workspace: Workspace, overrides: dict, env: dict, say: Callable[[str], None]) -> None:
    run_stages(TRIAL_STAGES, workspace.path, {**workspace.env, **env}, workspace.path / "sweep.log", say)


def run_trial(
    sweep: Sweep,
    study: optuna.Study,
    trial: optuna.Trial,
    values: dict,
    source: Path,
    parent: str,
    storage: str,
    stages: StageRunner = stages_here,
) -> Outcome:
    import json

    number, started = trial.number, time.monotonic()
    preset, pairs = overrides(values)
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
    print(f"trial {number}: {shown}", flush=True)
    try:
        workspace = open_workspace(
            source, f"sweep-{sweep.name}-trial-{number}", preset=preset or sweep.preset, values=pairs
        )
    except StageFailed as error:
        return Outcome(number, values, "failed", reason=str(error))
    env = {
        PARENT_RUN: parent,
        TRIAL: json.dumps({"storage": storage, "study": study.study_name, "trial": number, "pruner": sweep.pruner}),
    }
    paths = load_params(workspace.path / "params.yaml").paths
    try:
        stages(
            f"trial {number}",
            workspace,
            {"preset": preset or sweep.preset, "values": pairs},
            env,
            lambda s: print(f"  trial {number}: {s}", flush=True),
        )
    except StageFailed as error:
        pruned = trial_attrs(study, number).get(PRUNED_AT)
        state = "pruned" if pruned is not None else "failed"
        outcome = Outcome(number, values, state, reason=str(error), seconds=time.monotonic() - started)
        print(f"trial {number}: {state}{f' at epoch {pruned}' if pruned is not None else ''}: {error}", flush=True)
        return outcome
    metrics = read_json(workspace.path / paths.metrics)
    run_id = read_json(workspace.path / paths.training_run)["run_id"]
    outcome = Outcome(
        number,
        values,
        "complete",
        metrics["bits_per_byte"],
        run_id,
        seconds=time.monotonic() - started,
    )
    record_child(outcome)
    print(f"trial {number}: {outcome.bits_per_byte:.4f} bits per byte in {outcome.seconds:.0f} s", flush=True)
    return outcome


def trial_attrs(study: optuna.Study, number: int) -> dict:
    return next(t.user_attrs for t in study.get_trials(deepcopy=False) if t.number == number)


def record_child(outcome: Outcome) -> None:
    """The trial's figure and state on its training run, a child of the sweep's run (a training
    restored from the DVC remote, made by an earlier run, stays that run's)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.log_metric(outcome.run_id, "validation_bits_per_byte", outcome.bits_per_byte)
    client.set_tag(outcome.run_id, "sweep_trial_state", outcome.state)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}.get(
        outcome.state, optuna.trial.TrialState.FAIL
    )
    trial.set_user_attr("reason", outcome.reason)
    trial.set_user_attr("seconds", round(outcome.seconds, 1))
    if outcome.run_id:
        trial.set_user_attr("mlflow_run_id", outcome.run_id)
    study.tell(trial, outcome.bits_per_byte if state == optuna.trial.TrialState.COMPLETE else None, state=state)


def gate(sweep: Sweep, study: optuna.Study, source: Path, parent: str, report_path: str) -> dict:
    """Register the best complete trial and put it through promotion, in a workspace of its own
    (its stages restored from the DVC remote); the report, as JSON, and on the sweep's run."""
    from mlflow import MlflowClient

    trials = finished(study)
    complete = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    rows = [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            # Optuna gives a pruned trial its last reported val_loss as its value: not bits per byte.
            "bits_per_byte": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            "pruned_at_epoch": t.user_attrs.get(PRUNED_AT),
            "values": t.user_attrs["values"],
            "reason": t.user_attrs.get("reason", ""),
            "seconds": t.user_attrs.get("seconds"),
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
        }
        for t in sorted(trials, key=lambda t: t.number)
    ]
    failures = [r["reason"] for r in rows if r["state"] == "fail"]
    report = {
        "sweep": sweep.name,
        "study": study.study_name,
        "trials": rows,
        "best": None,
        "promotion": None,
        "last_failure": failures[-1] if failures else "",
    }
    if complete:
        best = complete[0]
        values = next(r["values"] for r in rows if r["trial"] == best.number)
        report["best"] = {"trial": best.number, "bits_per_byte": best.value, "values": values}
        if len(complete) > 1:
            report["best"]["margin_over_second_bpb"] = complete[1].value - best.value
        preset, pairs = overrides(values)
        print(
            f"sweep {sweep.name}: the best, trial {best.number} ({best.value:.4f} bits per byte), "
            "goes to the promotion gate",
            flush=True,
        )
        outcome = through_the_gate(
            source,
            f"sweep-{sweep.name}-best",
            preset or sweep.preset,
            pairs,
            lambda s: print(f"  best: {s}", flush=True),
        )
        report["promotion"] = outcome["promotion"]
        report["best"]["registered"] = outcome["registered"]
    write_json(report_path, report)
    client = MlflowClient()
    client.log_dict(parent, report, "sweep.json")
    if report["best"]:
        client.log_metric(parent, "best_bits_per_byte", report["best"]["bits_per_byte"])
    return report
