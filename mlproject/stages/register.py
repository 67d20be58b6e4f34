"""`mlproject register`: log the model to MLflow behind the pyfunc interface; a new version."""

from pathlib import Path

from mlproject.config import Params
from mlproject.fileio import read_json


def run(params: Params, args) -> None:
    import yaml

    from mlproject.tracking.registry import connect, register

    p = params.paths
    connect(params.mlflow)
    run_id = read_json(p.training_run)["run_id"]
    raw = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    record = register(params.mlflow, run_id, p, raw)
    again = "; this model was registered before, so no new version" if record.get("registered_before") else ""
    print(f"register: {record['model_uri']} (run {record['run_id']}, commit {record['git_commit'][:10]}{again})")
