"""`mlproject train`: train the model kind `train.kind` names, tracked as one MLflow run that an
interrupted training resumes, here or (its checkpoints kept with the run) on another machine."""

import dataclasses
import os
import time

from mlproject.config import Params
from mlproject.fileio import write_json


def run(params: Params, args) -> None:
    import mlflow
    from mlflow import MlflowClient

    from mlproject.models import kinds
    from mlproject.tracking import checkpoints as shared_checkpoints
    from mlproject.tracking.registry import connect, flat_params, git_commit, orchestrator_tags, run_standing_for
    from mlproject.tracking.trial import pruning_check, run_name

    p, model_class, settings = params.paths, kinds.kind_class(params.train.kind), params.train.settings()
    if os.environ.get("RANK", "0") != "0":  # a further process of `accelerate launch`: rank 0 tracks
        model_class.train(settings, params.seed, p, stop_after=args.stop_after_epoch, scoring=params.evaluate)
        return
    connect(params.mlflow)
    client, share = MlflowClient(), shared_checkpoints.wanted()
    fingerprint = model_class.checkpoint_fingerprint(settings, params.seed, p) if share else None
    if share and model_class.resumable_run_id(settings, params.seed, p) is None:
        shared_checkpoints.fetch(client, params.mlflow.experiment, fingerprint, p.checkpoints)
    checkpoint_run = model_class.resumable_run_id(settings, params.seed, p)
    previous = run_standing_for(client, checkpoint_run)  # None: a lost store; a new run
    if checkpoint_run is not None and previous != checkpoint_run:
        print(
            f"train: the checkpoint's run {checkpoint_run} is not in {mlflow.get_tracking_uri()}; "
            f"tracking this training under {'its stand-in ' + previous if previous else 'a new run'}",
            flush=True,
        )
    started, prune = time.monotonic(), pruning_check()  # None unless a sweep's trial
    # The commit, with the run's overrides, rebuilds its pipeline later (`mlproject register --run`).
    tags = {**orchestrator_tags(), **run_name(), "model_kind": params.train.kind, "git_commit": git_commit()[0]}
    with mlflow.start_run(run_id=previous, tags=tags) as run:
        if previous is None:  # the same flattened names for every kind, so MLflow's compare view lines runs up
            mlflow.log_params(
                flat_params(
                    {
                        "seed": params.seed,
                        "tokenize": dataclasses.asdict(params.tokenize),
                        "train": params.train.logged(),
                    }
                )
            )
        if share:
            mlflow.set_tag(shared_checkpoints.FINGERPRINT_TAG, fingerprint)
        spent_before = run.data.metrics.get("training_seconds", 0.0)  # by the runs this one resumes

        def log_epoch(record: dict) -> None:  # against the optimizer step where the kind counts them
            mlflow.log_metrics(
                {k: v for k, v in record.items() if k not in ("epoch", "step")},
                step=record.get("step", record["epoch"]),
            )
            if share:  # after the kind has written the epoch's checkpoint
                shared_checkpoints.keep(client, run.info.run_id, p.checkpoints, record["epoch"])
            if prune:
                prune(record)

        def log_step(record: dict) -> None:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "step"}, step=record["step"])
            if prune and "val_loss" in record:  # measured within the epoch (validate_every_steps)
                prune(record)

        result = model_class.train(
            settings,
            params.seed,
            p,
            on_epoch=log_epoch,
            run_id=run.info.run_id,
            stop_after=args.stop_after_epoch,
            on_step=log_step,
            scoring=params.evaluate,
        )
        mlflow.log_metrics(
            {
                "parameters": result.parameters,
                "best_epoch": result.best_epoch,
                "training_seconds": spent_before + time.monotonic() - started,
            }
        )
        if result.baseline:
            mlflow.log_metric("zero_shot_bits_per_byte", result.baseline["bits_per_byte"])
    write_json(p.training_run, {"run_id": run.info.run_id})
    last, best = result.history[-1], next(r for r in result.history if r["epoch"] == result.best_epoch)
    stopped = f"stopped early after {last['epoch']}" if result.stopped_early else f"{last['epoch']}"
    print(
        f"train: {result.parameters:,} parameters, {stopped} epochs; kept epoch {result.best_epoch} "
        f"(loss {best['loss']:.4f}, val_loss {best['val_loss']:.4f}) -> {p.model}"
    )
