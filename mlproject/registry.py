"""Register and promote stages: MLflow model versions, their lineage, and the champion alias.

A new version becomes champion only if its bits per byte beats the champion's on the same
validation text; a champion scored on other data is re-scored first. A worse model never wins.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient

from mlproject.config import EvaluateConfig, MlflowConfig, PromoteConfig
from mlproject.fileio import md5_of, read_json, read_jsonl, write_json

CHAMPION, CHALLENGER = "champion", "challenger"


def connect(config: MlflowConfig) -> str:
    """Point MLflow at the store (MLFLOW_TRACKING_URI wins over params) and the experiment."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(config.experiment)
    return uri


def git_commit(repo: str = ".") -> tuple[str, bool]:
    """The commit checked out and whether tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit, bool(git("status", "--porcelain", "--untracked-files=no"))


def data_lineage(tokens_dir: str, lock_path: str = "dvc.lock") -> dict[str, str]:
    """MD5 of every data file the train stage read, as dvc.lock records them (or computed)."""
    lock = Path(lock_path)
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        deps = {d["path"]: d.get("md5", "") for d in stages.get("train", {}).get("deps", [])}
        data = {path: md5 for path, md5 in deps.items() if not path.endswith(".py")}
        if data:
            return data
    return {str(p): md5_of(p) for p in sorted(Path(tokens_dir).iterdir()) if p.is_file()}


def register(config: MlflowConfig, run_id: str, model_dir: str, tokens_dir: str, metrics_path: str,
             samples_path: str, params: dict, registered_path: str) -> dict:
    """Log the model behind the pyfunc interface to the training run; register a new version."""
    from mlproject.pyfunc import MODEL_ARTIFACT, TextGenerator, signature

    metrics = read_json(metrics_path)
    commit, dirty = git_commit()
    lineage = {"git_commit": commit, "git_dirty": str(dirty).lower(),
               **{f"data_md5:{path}": md5 for path, md5 in data_lineage(tokens_dir).items()}}
    scores = {k: metrics[k] for k in ("bits_per_byte", "bits_per_character", "perplexity")}
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"validation_{k}": v for k, v in scores.items()})
        mlflow.log_table(pd.DataFrame(read_jsonl(samples_path)), artifact_file="samples.json")
        mlflow.log_artifact(metrics_path)
        mlflow.log_dict(params, "params.yaml")
        mlflow.set_tags(lineage)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=TextGenerator(),
            artifacts={MODEL_ARTIFACT: str(Path(model_dir) / "model")},
            code_paths=[str(Path(__file__).parent)], signature=signature(),
            registered_model_name=config.model_name)
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {**lineage, "validation_md5": metrics["validation_md5"],
                       **{k: str(v) for k, v in scores.items()}}.items():
        client.set_model_version_tag(config.model_name, version, key, value)
    record = {"model_name": config.model_name, "version": version, "run_id": run_id,
              "model_uri": f"models:/{config.model_name}/{version}", "git_commit": commit}
    write_json(registered_path, record)
    return record


def champion_version(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def champion_bits_per_byte(client, name: str, champion, validation_md5: str, tokens_dir: str,
                           evaluate_config: EvaluateConfig) -> tuple[float, str]:
    """The champion's figure on the current validation text: recorded, or re-scored now."""
    from mlproject.evaluate import score_validation

    tags = champion.tags
    if tags.get("validation_md5") == validation_md5 and "bits_per_byte" in tags:
        return float(tags["bits_per_byte"]), "recorded"
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}")
    figures = score_validation(loaded.unwrap_python_model().model, tokens_dir, evaluate_config)
    client.set_model_version_tag(name, champion.version, f"bits_per_byte.on.{validation_md5}",
                                 str(figures["bits_per_byte"]))
    return figures["bits_per_byte"], "re-scored on the current validation text"


def decide(candidate_bpb: float, champion_bpb: float | None, margin: float) -> tuple[bool, str]:
    """Promote only a strictly better model that also beats the champion by `margin`."""
    if champion_bpb is None:
        return True, "first model: no champion yet"
    if candidate_bpb < champion_bpb - margin:
        return True, f"beats the champion by {champion_bpb - candidate_bpb:.4f} bits per byte (margin {margin})"
    return False, f"does not beat the champion by more than {margin} bits per byte"


def promote(config: PromoteConfig, mlflow_config: MlflowConfig, evaluate_config: EvaluateConfig,
            registered_path: str, metrics_path: str, tokens_dir: str, promotion_path: str) -> dict:
    client = MlflowClient()
    name = mlflow_config.model_name
    candidate = read_json(registered_path)["version"]
    metrics = read_json(metrics_path)
    champion = champion_version(client, name)
    champion_bpb, source = None, None
    if champion is not None and str(champion.version) == candidate:
        champion_bpb, source = metrics["bits_per_byte"], "the candidate itself"
        promoted, reason = True, "already the champion"
    else:
        if champion is not None:
            champion_bpb, source = champion_bits_per_byte(
                client, name, champion, metrics["validation_md5"], tokens_dir, evaluate_config)
        promoted, reason = decide(metrics["bits_per_byte"], champion_bpb, config.min_improvement_bpb)
    client.set_registered_model_alias(name, CHAMPION if promoted else CHALLENGER, candidate)
    report = {
        "model_name": name, "candidate_version": candidate,
        "candidate_bits_per_byte": metrics["bits_per_byte"],
        "champion_version": str(champion.version) if champion is not None else None,
        "champion_bits_per_byte": champion_bpb, "champion_figure": source,
        "validation_md5": metrics["validation_md5"], "margin": config.min_improvement_bpb,
        "decision": "promoted" if promoted else "challenger", "reason": reason,
        "champion_now": candidate if promoted else str(champion.version),
    }
    for key in ("decision", "reason", "candidate_bits_per_byte", "champion_bits_per_byte", "champion_version"):
        client.set_model_version_tag(name, candidate, f"promotion.{key}", str(report[key]))
    write_json(promotion_path, report)
    return report
