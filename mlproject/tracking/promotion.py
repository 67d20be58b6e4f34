"""Promote stage: the champion alias moves only to a version that scores better.

A new version becomes champion only if its bits per byte beats the champion's on the same
validation text; a champion scored on other data is re-scored first. A worse model never wins,
whatever its kind: both figures come through the same language-model interface.
"""

from __future__ import annotations

import mlflow
from mlflow import MlflowClient

from mlproject.config import EvaluateConfig, MlflowConfig, Paths, PromoteConfig
from mlproject.fileio import read_json, write_json

CHAMPION, CHALLENGER = "champion", "challenger"


def champion_version(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def champion_bits_per_byte(client, name: str, champion, validation_md5: str, tokens_dir: str,
                           evaluate_config: EvaluateConfig) -> tuple[float, str]:
    """The champion's figure on the current validation text: recorded, or re-scored now."""
    from mlproject.models.evaluation import score_validation

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
            paths: Paths) -> dict:
    client = MlflowClient()
    name = mlflow_config.model_name
    candidate = read_json(paths.registered)["version"]
    metrics = read_json(paths.metrics)
    champion = champion_version(client, name)
    champion_bpb, source = None, None
    if champion is not None and str(champion.version) == candidate:
        champion_bpb, source = metrics["bits_per_byte"], "the candidate itself"
        promoted, reason = True, "already the champion"
    else:
        if champion is not None:
            champion_bpb, source = champion_bits_per_byte(
                client, name, champion, metrics["validation_md5"], paths.tokens, evaluate_config)
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
    write_json(paths.promotion, report)
    return report
