"""A registered version run in a process of its own, by the code registered with it.

Generate and promote (re-scoring a champion) reach a version of any kind through here. The version's
copy of its code (registry.PYFUNC_CODE and its kind's package) answers, not the checkout's: what a
version generates and scores is fixed when it is registered, so those stages depend on this file and
on the version they name, never on the kind packages (dvc.yaml). The figure a version's code
reports is still held to the checkout's rule (evaluation.validation_figures).

The parent imports nothing of mlproject here but errors and the rule; the child (this file run as a
script) imports mlproject only once MLflow has put the version's code first on the import path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Errors whose one-line message the child hands back instead of a traceback: what a user did wrong.
TOLD_ERRORS = ("ConfigError", "StageFailed", "NotEveryByte")


def generate(uri: str, tracking_uri: str, prompts: list[str], sampling: dict) -> list[str]:
    """The texts the version at `uri` generates for `prompts`, in order."""
    return run({"task": "generate", "uri": uri, "prompts": prompts, "sampling": sampling}, tracking_uri)["texts"]


def score(uri: str, tracking_uri: str, tokens_dir: str, evaluate: dict) -> tuple[dict, dict | None]:
    """The version's figures on the validation text in `tokens_dir`, under the checkout's rule, and
    what each of its documents cost (evaluation.document_scores); None for a version whose code
    gives no cost per token (registered before it did)."""
    import numpy as np

    from mlproject.models.evaluation import (
        document_scores,
        validation_document_starts,
        validation_figures,
        validation_text_path,
    )
    from mlproject.models.interface import Totals

    path = validation_text_path(tokens_dir)
    answer = run({"task": "score", "uri": uri, "text": str(path.resolve()), "evaluate": evaluate}, tracking_uri)
    given = answer["totals"]
    totals = Totals(
        **{k: v for k, v in given.items() if k not in ("token_costs", "token_starts")},
        **{k: np.asarray(given[k]) for k in ("token_costs", "token_starts") if given.get(k) is not None},
    )
    figures = validation_figures(path, answer["kind"], answer["level"], totals, answer["back"])
    if totals.token_costs is None:
        return figures, None
    text = path.read_text(encoding="utf-8")
    return figures, document_scores(text, validation_document_starts(tokens_dir), totals, figures)


def run(request: dict, tracking_uri: str) -> dict:
    """Run `request` in a new process (python -P: neither this folder nor the current one on its
    import path); its output goes to this process's. A told error comes back as that error."""
    from mlproject.config import ConfigError, StageFailed

    with tempfile.TemporaryDirectory(prefix="version-") as folder:
        asked, answered = Path(folder) / "request.json", Path(folder) / "answer.json"
        asked.write_text(json.dumps({**request, "checkout": str(Path(__file__).parents[1])}), encoding="utf-8")
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
        done = subprocess.run([sys.executable, "-P", __file__, str(asked), str(answered)], env=env, check=False)
        answer = json.loads(answered.read_text(encoding="utf-8")) if answered.is_file() else None
    if answer is None or done.returncode != 0:
        if answer and "error" in answer:
            raise (ConfigError if answer["error"] == "ConfigError" else StageFailed)(answer["message"])
        raise StageFailed(f"{request['uri']}: its process ended with exit status {done.returncode} (its output above)")
    return answer


def answer(request: dict) -> dict:
    """In the child: load the version (MLflow puts its code first on the import path) and do the task."""
    import dataclasses

    import mlflow.pyfunc
    import pandas as pd

    loaded = mlflow.pyfunc.load_model(request["uri"])
    import mlproject

    if Path(mlproject.__file__).resolve().parent == Path(request["checkout"]).resolve():
        raise RuntimeError(
            f"{request['uri']} was loaded by the checkout's mlproject, not its own copy: MLflow no "
            "longer puts a version's code first on the import path (mlflow.pyfunc.load_model)"
        )
    if request["task"] == "generate":
        frame = loaded.predict(pd.DataFrame({"prompt": request["prompts"]}), params=request["sampling"])
        return {"texts": [str(text) for text in frame["text"]]}
    from mlproject.config import EvaluateConfig

    model = loaded.unwrap_python_model().model
    text = Path(request["text"]).read_text(encoding="utf-8")
    known = {field.name for field in dataclasses.fields(EvaluateConfig)}  # a version's own settings
    totals = model.score(text, EvaluateConfig(**{k: v for k, v in request["evaluate"].items() if k in known}))
    return {
        "kind": model.kind,
        "level": model.token_level,
        # A version's own Totals: per-token costs and places where its code gives them.
        "totals": {k: v.tolist() if hasattr(v, "tolist") else v for k, v in dataclasses.asdict(totals).items()},
        "back": model.round_trip(text),
    }


def main(asked: str, answered: str) -> int:
    request = json.loads(Path(asked).read_text(encoding="utf-8"))
    try:
        result = answer(request)
    except Exception as error:
        if type(error).__name__ not in TOLD_ERRORS:
            raise
        result, code = {"error": type(error).__name__, "message": str(error)}, 2
    else:
        code = 0
    Path(answered).write_text(json.dumps(result), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
