"""Prefect tasks of batch generation: plan the batch, generate one shard, write the rows in order.

A shard loads the pinned champion version once; a failed shard (a killed Dask worker, an error)
is retried alone, the finished ones are kept.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from mlproject.config import load_params
from mlproject.fileio import write_jsonl
from mlproject.generation import Batch, champion_batch, generate_shard, read_prompts, shards


def dask_runner(address: str | None, workers: int) -> DaskTaskRunner:
    """An existing Dask cluster at `address`, or a local one of `workers` single-threaded processes."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


@task
def plan_batch(repo_dir: str, prompts_file: str | None, shard_size: int) -> tuple[Batch, list[list[str]]]:
    from mlproject.tracking.registry import store_uri

    params = load_params(Path(repo_dir) / "params.yaml")
    prompts = read_prompts(Path(repo_dir) / (prompts_file or params.generate.prompts_file))
    batch = champion_batch(params.generate, params.mlflow.model_name, params.seed, store_uri(params.mlflow))
    return batch, shards(prompts, shard_size)


@task(retries=2, retry_delay_seconds=1, task_run_name="shard {index}")
def generate_one_shard(batch: Batch, index: int, prompts: list[str]) -> list[dict]:
    return generate_shard(batch, prompts)


@task
def write_generations(repo_dir: str, batch: Batch, rows: list[dict]) -> str:
    path = Path(repo_dir) / load_params(Path(repo_dir) / "params.yaml").paths.batch_generations
    write_jsonl(path, rows)
    create_table_artifact(
        key="batch-generations",
        table=rows[:20],
        description=f"{len(rows)} texts from {batch.model_uri} (the first 20) -> {path}",
    )
    return str(path)
