"""`mlproject generate`: batch generation from the champion through the one pyfunc interface.

The consumer only knows `models:/<name>@champion`; which kind of model answers is the registry's
business.
"""

from __future__ import annotations

from pathlib import Path

from mlproject.config import ConfigError, GenerateConfig, Params, Paths, StageFailed
from mlproject.fileio import write_jsonl


def read_prompts(path: str) -> list[str]:
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


def generate(prompts: list[str], config: GenerateConfig, model_name: str, seed: int,
             paths: Paths) -> list[dict]:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    try:
        version = str(MlflowClient().get_model_version_by_alias(model_name, "champion").version)
    except mlflow.exceptions.MlflowException:
        raise StageFailed(f"models:/{model_name}@champion: not in the tracking store "
                          f"{mlflow.get_tracking_uri()} (a new or lost store?); register the trained "
                          "model again with `dvc repro -f -s register`, then `dvc repro`") from None
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@champion")
    sampling = {"max_length": config.max_length, "temperature": config.temperature,
                "top_k": config.top_k, "top_p": config.top_p, "seed": seed}
    frame = model.predict(pd.DataFrame({"prompt": prompts}), params=sampling)
    rows = [{"prompt": p, "text": t, "model": model_name, "model_version": version, **sampling}
            for p, t in zip(frame["prompt"], frame["text"])]
    write_jsonl(paths.generations, rows)
    return rows


def run(params: Params, args) -> None:
    from mlproject.tracking.registry import connect

    prompts = read_prompts(params.generate.prompts_file)  # bad prompts fail before any work
    connect(params.mlflow)
    rows = generate(prompts, params.generate, params.mlflow.model_name, params.seed, params.paths)
    print(f"generate: {len(rows)} texts from {params.mlflow.model_name}@champion "
          f"(version {rows[0]['model_version']}) -> {params.paths.generations}")
    for row in rows[:3]:
        print(f"  {(row['prompt'] + row['text'])[:120]!r}")
