"""Batch generation from the champion through the one pyfunc interface, in shards: the generate
stage runs one shard in its process; the generation flow fans many out over a Dask cluster.

The consumer only knows `models:/<name>@champion`; which kind of model answers is the registry's
business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlproject.config import ConfigError, GenerateConfig, StageFailed


@dataclass(frozen=True)
class Batch:
    """What every shard of one batch shares: the one version that answers, and the settings."""

    model_name: str
    version: str
    tracking_uri: str
    sampling: dict

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def read_prompts(path: str | Path) -> list[str]:
    """Non-blank lines of the prompts file; a file with none is an error that names it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"generate.prompts_file: {path} not found; expected a text file, one prompt per line")
    try:
        prompts = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ConfigError(f"generate.prompts_file: {path} is not valid UTF-8") from None
    if not prompts:
        raise ConfigError(f"generate.prompts_file: {path} holds no prompts; expected one per line")
    return prompts


def shards(prompts: list[str], size: int) -> list[list[str]]:
    """Consecutive slices of at most `size` prompts; joined in order they give the prompts back."""
    if size < 1:
        raise ConfigError(f"shard_size = {size}: expected a value >= 1")
    return [prompts[start : start + size] for start in range(0, len(prompts), size)]


def awaiting_approval(client, model_name: str) -> str | None:
    """The version of `model_name` that awaits a person's approval, if any."""
    import mlflow

    from mlproject.tracking.registry import PENDING_TAG

    try:
        return client.get_registered_model(model_name).tags.get(PENDING_TAG)
    except mlflow.exceptions.MlflowException:  # no such model
        return None


def champion_batch(config: GenerateConfig, model_name: str, seed: int, tracking_uri: str) -> Batch:
    """The champion's version in the store at `tracking_uri` now, pinned for the whole batch (a
    promotion meanwhile changes nothing)."""
    import mlflow
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        version = str(client.get_model_version_by_alias(model_name, "champion").version)
    except mlflow.exceptions.MlflowException:
        awaiting = awaiting_approval(client, model_name)
        if awaiting:
            raise StageFailed(
                f"models:/{model_name}@champion: none yet; version {awaiting} awaits approval "
                f"(mlproject approve {awaiting}), then generate again"
            ) from None
        raise StageFailed(
            f"models:/{model_name}@champion: not in the tracking store "
            f"{tracking_uri} (a new or lost store?); register the trained "
            "model again with `dvc repro -f -s register`, then `dvc repro`"
        ) from None
    sampling = {
        "max_length": config.max_length,
        "temperature": config.temperature,
        "top_k": config.top_k,
        "top_p": config.top_p,
        "seed": seed,
    }
    return Batch(model_name, version, tracking_uri, sampling)


def generate_shard(batch: Batch, prompts: list[str]) -> list[dict]:
    """Generate every prompt of the shard with the batch's version, run by its own code in a process
    of its own (tracking/version_process.py), loaded once; rows in prompt order."""
    from mlproject.tracking import version_process

    texts = version_process.generate(batch.model_uri, batch.tracking_uri, prompts, batch.sampling)
    return [
        {"prompt": p, "text": t, "model": batch.model_name, "model_version": batch.version, **batch.sampling}
        for p, t in zip(prompts, texts)
    ]
