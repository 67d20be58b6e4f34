"""A real sweep on the tiny project: trials side by side in workspaces of their own, the stages
they share run once, one MLflow parent run over the trials' runs, a killed sweep resumed, and the
best trial through the promotion gate."""

import os
import signal
import subprocess
import time

import mlflow
import optuna
import pytest
import yaml

from infra.servers import free_port
from mlproject.fileio import read_json
from mlproject.workspace import RUNS_DIR
from tests.conftest import BIN, git, server_process

SWEEP = {
    "search": "grid",
    "parallelism": 2,
    "pruner": "none",
    "params": {"train.rnn.units": [8, 16, 24, 32]},
}


def sweep(project, name: str, env: dict, wait_for_finished: int | None = None) -> subprocess.CompletedProcess:
    """`mlproject sweep NAME` in the project; killed (its whole process group) once the study
    has `wait_for_finished` finished trials, when given."""
    command = [str(BIN / "mlproject"), "sweep", name]
    if wait_for_finished is None:
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(2)
        if (project / "sweeps.db").exists() and len(finished_trials(project)) >= wait_for_finished:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return subprocess.CompletedProcess(command, process.returncode, process.stdout.read(), "")


def finished_trials(project) -> list:
    storage = f"sqlite:///{project / 'sweeps.db'}"
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return []
    study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.fixture
def sweep_project(project, tmp_path):
    (project / "sweeps").mkdir()
    (project / "sweeps" / "sizes.yaml").write_text(yaml.safe_dump(SWEEP))
    (project / "sweeps" / "worse.yaml").write_text(
        yaml.safe_dump({**SWEEP, "parallelism": 1, "params": {"train.max_steps_per_epoch": [1]}})
    )
    # Values each param's rule accepts, and no training can take (more than the tiny corpus's windows).
    (project / "sweeps" / "too-big.yaml").write_text(
        yaml.safe_dump({**SWEEP, "parallelism": 1, "params": {"train.batch_size": [100000, 200000]}})
    )
    git(project, "add", "sweeps")
    git(project, "commit", "-qm", "sweeps")
    return project


def test_a_sweep_runs_its_trials_side_by_side_resumes_when_killed_and_promotes_its_best(
    sweep_project, tmp_path, browser_page
):
    project = sweep_project
    env = {**os.environ, RUNS_DIR: str(tmp_path / "runs"), "MLPROJECT_KEEP_RUNS": "20"}
    env.pop("MLFLOW_TRACKING_URI", None)
    killed = sweep(project, "sizes", env, wait_for_finished=2)
    assert "shared: tokenize" in killed.stdout, killed.stdout[-3000:]
    finished_before = len(finished_trials(project))
    assert 2 <= finished_before < 4, killed.stdout[-3000:]

    resumed = sweep(project, "sizes", env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"({finished_before} trials finished before)" in resumed.stdout
    started = [line for line in resumed.stdout.splitlines() if line.startswith("trial ") and "train.rnn.units=" in line]
    assert len(started) == 4 - finished_before, resumed.stdout  # only the others, the interrupted ones again
    trials = finished_trials(project)
    assert sorted(t.user_attrs["values"]["train.rnn.units"] for t in trials) == [8, 16, 24, 32]  # each once

    # The stages every trial shares ran once, in the sweep's shared workspace; each trial restored them.
    logs = sorted((tmp_path / "runs").glob("sweep-sizes-trial-*/sweep.log"))
    assert len(logs) >= 4 and all("Running stage 'tokenize'" not in log.read_text() for log in logs)
    shared = sorted((tmp_path / "runs").glob("sweep-sizes-shared-*/sweep.log"), key=lambda log: log.stat().st_mtime)
    assert ["Running stage 'tokenize'" in log.read_text() for log in shared] == [True, False]  # killed, resumed

    report = read_json(project / "reports" / "sweep.json")
    best = min(trials, key=lambda t: t.value)
    assert report["best"]["trial"] == best.number and report["best"]["bits_per_byte"] == best.value
    assert report["promotion"]["decision"] == "promoted" and report["promotion"]["candidate_version"] == "1"

    # One parent run in MLflow, each trial's training run a child of it, carrying the trial's figure.
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("text-generation")
    parents = client.search_runs([experiment.experiment_id], "tags.sweep = 'sizes'")
    assert len(parents) == 1
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    complete = [c for c in children if c.data.tags.get("sweep_trial_state") == "complete"]
    assert sorted(c.data.metrics["validation_bits_per_byte"] for c in complete) == sorted(t.value for t in trials)

    # MLflow's UI lists the sweep as one run; opened, its trials ("trial N") under it.
    mlflow_ui_shows_the_trials_under_the_sweep(project, tmp_path, browser_page, [f"trial {t.number}" for t in trials])

    compared = subprocess.run(
        [str(BIN / "mlproject"), "compare", "--sweep", "sizes"], cwd=project, env=env, capture_output=True, text=True
    )
    assert compared.returncode == 0, compared.stderr
    ranked = [line.split() for line in compared.stdout.splitlines() if line[:1].isdigit()]
    assert [row[0] for row in ranked] == ["1", "2", "3", "4"] and all(row[1] == "complete" for row in ranked)
    assert [float(row[2]) for row in ranked] == sorted(round(t.value, 4) for t in trials)
    assert all(row[-1].startswith("train.units=") for row in ranked)  # the one param that differs (as logged)

    # A sweep whose best is worse than the champion: registered, and challenger.
    worse = sweep(project, "worse", env)
    assert worse.returncode == 0, worse.stdout[-3000:] + worse.stderr[-3000:]
    report = read_json(project / "reports" / "sweep.json")
    assert report["promotion"]["decision"] == "challenger" and report["promotion"]["champion_now"] == "1"
    assert "-> challenger" in worse.stdout

    # Another trial, registered later from its run: its stages restored from the remote, nothing
    # trained or scored again (they may only be restored there), and put through promotion.
    second = sorted(trials, key=lambda t: t.value)[1]
    run_id = second.user_attrs["mlflow_run_id"]
    runs_before = len(client.search_runs([experiment.experiment_id]))
    registered = subprocess.run(
        [str(BIN / "mlproject"), "register", "--run", run_id], cwd=project, env=env, capture_output=True, text=True
    )
    assert registered.returncode == 0, registered.stdout[-3000:] + registered.stderr[-3000:]
    assert f"(run {run_id}) -> challenger" in registered.stdout, registered.stdout
    [version] = client.search_model_versions(f"run_id = '{run_id}'")
    assert str(version.version) == "3"  # MLflow 3.17 gives an int here
    assert len(client.search_runs([experiment.experiment_id])) == runs_before


def test_failed_trials_are_recorded_with_their_reason_and_a_sweep_whose_every_trial_failed_exits_non_zero(
    sweep_project, tmp_path
):
    project = sweep_project
    env = {**os.environ, RUNS_DIR: str(tmp_path / "runs")}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = sweep(project, "too-big", env)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("mlproject sweep: error: sweep too-big: every trial failed (the last: stage train failed: ")
    assert "train.batch_size = 200000: more than the" in line, line
    assert "trial 1: failed: stage train failed" in result.stdout  # the first failed, and the sweep went on
    report = read_json(project / "reports" / "sweep.json")
    assert [(t["trial"], t["state"]) for t in report["trials"]] == [(0, "fail"), (1, "fail")]
    assert all("more than the" in t["reason"] for t in report["trials"]) and report["best"] is None
    store = f"sqlite:///{project / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.get_experiment_by_name("text-generation").experiment_id
    [parent] = client.search_runs([experiment], "tags.sweep = 'too-big'")
    assert parent.info.status == "FAILED"
    assert not client.search_registered_models()  # nothing registered


def mlflow_ui_shows_the_trials_under_the_sweep(project, tmp_path, browser_page, names: list[str]) -> None:
    from playwright.sync_api import expect

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = f"sqlite:///{project / 'mlflow.db'}"
    command = ["mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    with server_process(command, project, f"{url}/health", tmp_path / "mlflow-ui.log", signal.SIGTERM):
        page = browser_page.page
        experiment = mlflow.MlflowClient(store).get_experiment_by_name("text-generation").experiment_id
        page.goto(f"{url}/#/experiments/{experiment}/runs")
        run_names = page.locator('[role="gridcell"][col-id="attributes.`Run Name`"]')
        sweep_cell = run_names.filter(has_text="sweep sizes")
        expect(sweep_cell).to_have_count(1)
        for name in names:  # nested: not listed until the sweep's run is opened
            expect(run_names.filter(has_text=name)).to_have_count(0)
        sweep_cell.get_by_role("button").click()  # its expander
        for name in names:
            expect(run_names.filter(has_text=name)).to_have_count(1)
        browser_page.screenshot(tmp_path / "mlflow-sweep.png")
    assert browser_page.blocked == []
