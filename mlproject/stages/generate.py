"""`mlproject generate`: batch generation from the champion, all prompts in this one process."""

from __future__ import annotations

from mlproject.config import Params
from mlproject.fileio import write_jsonl
from mlproject.generation import champion_batch, generate_shard, read_prompts


def run(params: Params, args) -> None:
    from mlproject.tracking.registry import connect

    prompts = read_prompts(params.generate.prompts_file)  # bad prompts fail before any work
    batch = champion_batch(params.generate, params.mlflow.model_name, params.seed, connect(params.mlflow))
    rows = generate_shard(batch, prompts)
    write_jsonl(params.paths.generations, rows)
    print(
        f"generate: {len(rows)} texts from {params.mlflow.model_name}@champion "
        f"(version {batch.version}) -> {params.paths.generations}"
    )
    for row in rows[:3]:
        print(f"  {(row['prompt'] + row['text'])[:120]!r}")
