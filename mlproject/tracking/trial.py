"""A training run that is a sweep's trial: each measured val_loss (each epoch's, and a transformers
kind's every `validate_every_steps`) goes to the trial's Optuna study, whose pruner may stop it
(mlproject/search/study.py). Outside a sweep nothing here runs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from mlproject.config import StageFailed

# Set by the sweep for its trials' stages: {"storage", "study", "trial" (its number), "pruner"}.
TRIAL = "MLPROJECT_SWEEP_TRIAL"
PRUNERS = ("median", "none")
PRUNED_AT = "pruned_at_epoch"  # the trial's user attribute, and the MLflow run's tag


class TrialPruned(StageFailed):
    """The sweep's pruner stopped this training: it cannot beat the trials before it."""


def make_pruner(name: str):
    """The pruner a sweep file names: the study's and its trials' trainings' (Optuna keeps none)."""
    import optuna

    # Two finished trials are enough to know a hopeless one (a sweep here is a handful of trials);
    # never at the first measurement, where a smaller or slower-learning model trails and then
    # catches up.
    if name == "median":
        # Optuna prunes from step n_warmup_steps on; measurements are counted from 1, so 2 is the second.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def run_name() -> dict:
    """The training run's name in a sweep, `trial N`, as a tag for its start (MLflow's UI lists a
    sweep's trials under its run by these); nothing outside a sweep (MLflow names the run)."""
    if not os.environ.get(TRIAL):
        return {}
    return {"mlflow.runName": f"trial {json.loads(os.environ[TRIAL])['trial']}"}


def pruning_check() -> Callable[[dict], None] | None:
    """For a trial's training, a callable given each record that carries a val_loss (each epoch's,
    and for the transformers kinds every `validate_every_steps` within one): it reports the loss to
    the study and raises TrialPruned when the pruner says stop. None outside a sweep."""
    if not os.environ.get(TRIAL):
        return None
    import mlflow
    import optuna

    spec = json.loads(os.environ[TRIAL])
    storage = optuna.storages.RDBStorage(spec["storage"])
    study = optuna.load_study(study_name=spec["study"], storage=storage, pruner=make_pruner(spec["pruner"]))
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(spec["study"]), spec["trial"]
    )
    trial = optuna.trial.Trial(study, trial_id)
    measured = 0

    def check(record: dict) -> None:
        nonlocal measured
        # The pruner compares trials at the same step: the count of measurements, which is the
        # epoch for every kind unless a transformers kind also measures within its epochs.
        measured += 1
        trial.report(record["val_loss"], step=measured)
        if trial.should_prune():
            epoch = round(record["epoch"], 2)  # a fraction where measured within an epoch
            storage.set_trial_user_attr(trial_id, PRUNED_AT, epoch)
            if mlflow.active_run():  # the training run
                mlflow.set_tags({PRUNED_AT: str(epoch), "sweep_trial_state": "pruned"})
            raise TrialPruned(
                f"trial {spec['trial']} of {spec['study']} pruned at epoch {epoch}: its val_loss "
                f"{record['val_loss']:.4f} is worse than the median of the trials before it there"
            )

    return check
