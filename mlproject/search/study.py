"""The sweep's Optuna study: what the next trial tries (grid, random or TPE, seeded by params'
`seed`), which trials are pruned (median), and the memory that lets a killed sweep resume."""

from __future__ import annotations

import json
import os

import optuna

from mlproject.search.sweep_file import PRESET, Sweep
from mlproject.tracking.trial import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints one line per trial itself

DEFAULT_STORAGE = "sqlite:///sweeps.db"
# A team's database for the studies, over the default: the team's servers give it to their workers
# (a database of its own: Optuna and MLflow each keep an alembic_version table).
STORAGE = "MLPROJECT_SWEEP_STORAGE"
INTERRUPTED = "interrupted"  # a trial whose sweep was killed: run again when the sweep resumes


def storage_url(given: str | None = None, default: str = DEFAULT_STORAGE) -> str:
    """The study's database: `--storage`, else MLPROJECT_SWEEP_STORAGE, else `default`."""
    return given or os.environ.get(STORAGE) or default


def sampler(sweep: Sweep, seed: int) -> optuna.samplers.BaseSampler:
    # A grid is its points queued (open_study); Optuna's GridSampler stops the study itself, which
    # only an optimize loop can take, not a sweep that asks and tells.
    return optuna.samplers.TPESampler(seed=seed) if sweep.search == "tpe" else optuna.samplers.RandomSampler(seed=seed)


def open_study(sweep: Sweep, seed: int, storage: str = DEFAULT_STORAGE) -> optuna.Study:
    """The sweep's study in `storage`, made or resumed: an edited sweep file is a new study. Trials
    a killed sweep left running are marked failed (interrupted) and queued again with their values."""
    name = f"{sweep.name}-{sweep.digest[:8]}"
    store = optuna.storages.RDBStorage(storage)
    study = optuna.create_study(
        study_name=name,
        storage=store,
        sampler=sampler(sweep, seed),
        pruner=make_pruner(sweep.pruner),
        direction="minimize",
        load_if_exists=True,
    )
    study.set_user_attr("sweep", str(sweep.path))
    study_id = store.get_study_id_from_name(name)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        store.set_trial_user_attr(trial_id, INTERRUPTED, True)
        store.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
    if sweep.search == "grid":
        for point in sweep.grid():  # each point once, however often the sweep resumes
            study.enqueue_trial({k: json.dumps(v) for k, v in point.items()}, skip_if_exists=True)
    return study


def suggest(trial: optuna.Trial, sweep: Sweep) -> dict:
    """The values this trial tries, by the sweep's dimensions: {key: value}."""
    values = {}
    for d in sweep.dimensions:
        if d.choices or sweep.search == "grid":
            # As JSON text: Optuna's categorical choices must be plain scalars, a grid's too.
            values[d.key] = json.loads(trial.suggest_categorical(d.key, [json.dumps(v) for v in d.grid_values()]))
        elif d.whole:
            values[d.key] = trial.suggest_int(d.key, d.low, d.high, log=d.log)
        else:
            values[d.key] = trial.suggest_float(d.key, d.low, d.high, log=d.log)
    return values


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count against the budget: complete, pruned, or failed for a reason of their own."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get(INTERRUPTED)]


def overrides(values: dict) -> tuple[str | None, list[str]]:
    """A trial's values as a workspace takes them: the preset it names, and key=value pairs."""
    return values.get(PRESET), [f"{k}={json.dumps(v)}" for k, v in values.items() if k != PRESET]
