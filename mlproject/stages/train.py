"""`mlproject train`: train the model kind `train.kind` names, tracked as one MLflow run that an
interrupted training resumes."""

import dataclasses
import os

from mlproject.config import Params
from mlproject.fileio import write_json


def run(params: Params, args) -> None:
    import mlflow
    from mlflow import MlflowClient

    from mlproject.models import kinds
    from mlproject.tracking.registry import connect, orchestrator_tags, run_standing_for

    p, model_class = params.paths, kinds.kind_class(params.train.kind)
    if os.environ.get("RANK", "0") != "0":  # a further process of `accelerate launch`: rank 0 tracks
        model_class.train(params.train, params.seed, p, stop_after=args.stop_after_epoch, scoring=params.evaluate)
        return
    connect(params.mlflow)
    checkpoint_run = model_class.resumable_run_id(params.train, params.seed, p)
    previous = run_standing_for(MlflowClient(), checkpoint_run)  # None: a lost store; a new run
    if checkpoint_run is not None and previous != checkpoint_run:
        print(f"train: the checkpoint's run {checkpoint_run} is not in {mlflow.get_tracking_uri()}; "
              f"tracking this training under {'its stand-in ' + previous if previous else 'a new run'}",
              flush=True)
    with mlflow.start_run(run_id=previous, tags=orchestrator_tags()) as run:
        if previous is None:
            mlflow.log_params({"seed": params.seed, "tokenize.level": params.tokenize.level,
                               **{f"train.{k}": v for k, v in dataclasses.asdict(params.train).items()}})

        def log_epoch(record: dict) -> None:  # against the optimizer step where the kind counts them
            mlflow.log_metrics({k: v for k, v in record.items() if k not in ("epoch", "step")},
                               step=record.get("step", record["epoch"]))

        def log_step(record: dict) -> None:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "step"}, step=record["step"])

        result = model_class.train(params.train, params.seed, p, on_epoch=log_epoch, run_id=run.info.run_id,
                                   stop_after=args.stop_after_epoch, on_step=log_step, scoring=params.evaluate)
        mlflow.log_metrics({"parameters": result.parameters, "best_epoch": result.best_epoch})
        if result.baseline:
            mlflow.log_metric("zero_shot_bits_per_byte", result.baseline["bits_per_byte"])
    write_json(p.training_run, {"run_id": run.info.run_id})
    last, best = result.history[-1], next(r for r in result.history if r["epoch"] == result.best_epoch)
    stopped = f"stopped early after {last['epoch']}" if result.stopped_early else f"{last['epoch']}"
    print(f"train: {result.parameters:,} parameters, {stopped} epochs; kept epoch {result.best_epoch} "
          f"(loss {best['loss']:.4f}, val_loss {best['val_loss']:.4f}) -> {p.model}")
