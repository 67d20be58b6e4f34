"""Sweep files checked whole before any trial, and the pruner a trial's training reports to."""

import json
import os
import subprocess
import sys

import optuna
import pytest
import yaml

from mlproject.search import study as sweep_study
from mlproject.search.sweep_file import load_sweep
from mlproject.tracking import trial as trial_module
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["char-rnn-size", "kinds"])
def test_the_shipped_sweeps_are_valid(name):
    sweep = load_sweep(name, ROOT / "params.yaml", ROOT / "sweeps")
    assert sweep.trials >= 3 and sweep.dimensions


GOOD = {"search": "grid", "params": {"train.rnn.units": [16, 32]}}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"epochs": 3}, "unknown key 'epochs'; expected description, minutes, parallelism, params, preset, pruner"),
        ({"params": {"train.rnn.units": []}}, "params.train.rnn.units = []: an empty list"),
        ({"params": {"train.learning_rate": {"low": 0.01, "high": 0.001}}}, "low = 0.01, high = 0.001: an empty range"),
        ({"params": {"train.rnn.units": [16, 0]}}, "params.train.rnn.units = 0: train.rnn.units"),
        ({"params": {"train.rnn.cell": ["gru", "transformer"]}}, 'params.train.rnn.cell = "transformer": '),
        (
            {"params": {"preset": ["default", "no-such-preset"]}},
            'params.preset = "no-such-preset": no-such-preset: no such preset',
        ),
        ({"trials": 0}, "trials = 0: expected how many trials at most"),
        ({"minutes": -1}, "minutes = -1: expected minutes"),
        ({"parallelism": 0}, "parallelism = 0: expected how many trials run side by side"),
        ({"search": "bayes"}, 'search = "bayes": expected grid or random or tpe'),
        ({"params": {"train.learning_rate": {"low": 0.001, "high": 0.01}}}, "a grid needs a list of values"),
        ({"params": {"units": [1, 2]}}, "params.units: expected a param as section.key"),
        ({"preset": "no-such-preset"}, "preset: no-such-preset: no such preset"),
    ],
)
def test_a_bad_sweep_file_fails_in_one_line_naming_it_before_any_trial(tmp_path, changes, expected):
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    (tmp_path / "presets").symlink_to(ROOT / "presets")
    sweep = tmp_path / "sweeps" / "bad.yaml"
    sweep.parent.mkdir()
    sweep.write_text(yaml.safe_dump({**GOOD, **changes}))
    result = subprocess.run(
        [sys.executable, "-m", "mlproject.cli", "sweep", "bad"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("mlproject sweep: error: sweeps/bad.yaml: "), line
    assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "presets", "sweeps"]  # no study, no run


def test_an_unknown_sweep_names_the_sweeps_there(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mlproject.cli", "sweep", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "mlproject sweep: error: nope: no sweep file sweeps/nope.yaml; the sweeps in sweeps/: char-rnn-size, kinds"
    )


def test_a_trial_whose_losses_trail_the_median_is_pruned_and_says_at_which_epoch(tmp_path, monkeypatch):
    sweep = load_sweep("char-rnn-size", ROOT / "params.yaml", ROOT / "sweeps")
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = sweep_study.open_study(sweep, seed=1, storage=storage)
    for losses in ([2.0, 1.6, 1.4], [2.1, 1.7, 1.5]):  # two finished trials, then the median pruner decides
        trial = study.ask()
        for epoch, loss in enumerate(losses, 1):
            trial.report(loss, epoch)
        study.tell(trial, losses[-1])
    hopeless = study.ask()
    monkeypatch.setenv(
        trial_module.TRIAL,
        json.dumps({"storage": storage, "study": study.study_name, "trial": hopeless.number, "pruner": "median"}),
    )
    check = trial_module.pruning_check()
    check({"epoch": 1, "val_loss": 9.0})  # far worse than the median, but at epoch 1 no trial is stopped
    with pytest.raises(
        trial_module.TrialPruned, match=f"trial {hopeless.number} of .* pruned at epoch 2: its val_loss 3.0000"
    ):
        check({"epoch": 2, "val_loss": 3.0})
    frozen = optuna.load_study(study_name=study.study_name, storage=storage).trials[hopeless.number]
    assert frozen.user_attrs[trial_module.PRUNED_AT] == 2 and frozen.intermediate_values == {1: 9.0, 2: 3.0}


def test_outside_a_sweep_training_reports_nowhere(monkeypatch):
    monkeypatch.delenv(trial_module.TRIAL, raising=False)
    assert trial_module.pruning_check() is None


def test_a_killed_sweeps_running_trials_run_again_with_their_values(tmp_path):
    sweep = load_sweep("char-rnn-size", ROOT / "params.yaml", ROOT / "sweeps")
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = sweep_study.open_study(sweep, seed=1, storage=storage)
    done = study.ask()
    study.tell(done, 1.5)
    left_running = study.ask()
    values = sweep_study.suggest(left_running, sweep)  # then the process is killed
    again = sweep_study.open_study(sweep, seed=1, storage=storage)
    assert [t.number for t in sweep_study.finished(again)] == [done.number]  # the interrupted one does not count
    rerun = again.ask()
    assert sweep_study.suggest(rerun, sweep) == values


def test_compare_names_a_sweep_that_never_ran(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "mlproject.cli", "compare", "--sweep", "sizes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # after MLflow's own lines on making a new store
    assert last.startswith("mlproject compare: error: no run of sweep sizes in sqlite:///"), last


def test_the_sweep_flow_runs_each_trial_as_a_task_named_after_it():
    from flows.sweep import sweep_flow, trial_task

    assert sweep_flow.name == "sweep" and trial_task.name == "trial"
    assert trial_task.task_run_name == "trial {trial.number}"


def test_register_run_refuses_an_unknown_run_and_a_run_that_is_no_training_in_one_line(tmp_path):
    import mlflow

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params["mlflow"]["tracking_uri"] = uri
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(params["mlflow"]["experiment"])
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags={"sweep": "sizes"}) as parent:
        pass
    mlflow.set_tracking_uri(None)
    for run_id, expected in [
        ("0123456789abcdef", f"--run 0123456789abcdef: no such run in {uri}"),
        (parent.info.run_id, f"--run {parent.info.run_id}: not a training run"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "mlproject.cli", "register", "--run", run_id],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"mlproject register: error: {expected}"), last
    assert not (tmp_path / "reports").exists()


def test_a_stage_a_workspace_may_only_restore_fails_at_once_instead_of_running(tmp_path):
    from mlproject.config import RESTORE_ONLY

    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "mlproject.cli", "train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, RESTORE_ONLY: "scrape,train"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "mlproject train: error: this run's stages may only be restored from the DVC remote, and it has no "
        "run of this stage with this code, data and these params"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing trained, nothing made


def test_a_runs_recorded_overrides_make_the_same_workspace_again():
    from mlproject.tracking.register_run import assignments
    from mlproject.workspace import parse_assignments

    recorded = {"train": {"rnn": {"units": 24}, "learning_rate": 0.002}, "tokenize": {"level": "word"}}
    assert parse_assignments(assignments(recorded)) == recorded
