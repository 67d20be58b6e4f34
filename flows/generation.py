"""The batch-generation flow: the prompts split into shards, mapped over a Dask cluster, each
shard served by the champion through the pyfunc; the rows written in prompt order.

Run it with `python -m flows.generation`; deployed with a daily schedule by `flows/deployments.py`.
"""

from __future__ import annotations

import sys

from prefect import flow, unmapped

from tasks.generation import dask_runner, generate_one_shard, plan_batch, write_generations


@flow(name="generate-shards", log_prints=True)
def generate_shards(repo_dir: str, prompts_file: str | None, shard_size: int) -> str:
    batch, prompt_shards = plan_batch(repo_dir, prompts_file, shard_size)
    futures = generate_one_shard.map(unmapped(batch), range(len(prompt_shards)), prompt_shards)
    rows = [row for future in futures for row in future.result()]
    return write_generations(repo_dir, batch, rows)


@flow(name="batch-generation", log_prints=True)
def generation_flow(
    repo_dir: str = ".",
    prompts_file: str | None = None,
    shard_size: int = 16,
    dask_address: str | None = None,
    workers: int = 2,
) -> str:
    """The output file's path. `dask_address` names an existing Dask scheduler; without it a
    local cluster of `workers` processes runs for this flow run only."""
    return generate_shards.with_options(task_runner=dask_runner(dask_address, workers))(
        repo_dir, prompts_file, shard_size
    )


if __name__ == "__main__":
    print(generation_flow(sys.argv[1] if len(sys.argv) > 1 else "."))
