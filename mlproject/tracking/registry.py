"""Register stage: the trained model logged behind the pyfunc interface as a new model version,
with its lineage (commit, params, data hashes) and its validation figures as tags.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient

from mlproject.config import MlflowConfig, Paths, StageFailed
from mlproject.fileio import copy_paths, folder_md5, md5_of, read_json, read_jsonl, write_json
from mlproject.models.epoch_log import PACKAGE, SHARED_CODE, kind_package
from mlproject.models.kinds import KIND_FILE

# MLflow's own retry settings, bounded so that a tracking server that does not answer fails a
# stage within about 30 s instead of MLflow's minutes (7 retries, 120 s timeouts); yours win.
TRACKING_SERVER_PATIENCE = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
}


def store_uri(config: MlflowConfig) -> str:
    """The tracking store a stage uses: MLFLOW_TRACKING_URI wins over params."""
    return os.environ.get("MLFLOW_TRACKING_URI") or config.tracking_uri


def connect(config: MlflowConfig) -> str:
    """Point MLflow at the store (MLFLOW_TRACKING_URI wins over params) and the experiment; a
    store that cannot be reached fails here, in one line naming it."""
    for key, value in TRACKING_SERVER_PATIENCE.items():
        os.environ.setdefault(key, value)
    uri = store_uri(config)
    mlflow.set_tracking_uri(uri)  # which MLflow also exports as MLFLOW_TRACKING_URI to child processes
    mlflow.set_registry_uri(uri)
    try:
        root = artifact_root(uri)
        if root and mlflow.get_experiment_by_name(config.experiment) is None:
            try:
                mlflow.create_experiment(config.experiment, artifact_location=root)
            except mlflow.exceptions.MlflowException:
                pass  # made meanwhile by another stage: set_experiment finds it
        mlflow.set_experiment(config.experiment)
    except mlflow.exceptions.MlflowException as error:
        reason = str(error).splitlines()[0][:200]
        raise StageFailed(
            f"mlflow.tracking_uri = {uri}: the tracking store cannot be reached ({reason}); "
            "start the server, or point MLFLOW_TRACKING_URI at one that answers"
        ) from None
    return uri


def artifact_root(uri: str) -> str | None:
    """Where a SQLite store's artifacts go: `mlruns/` beside the database file. (MLflow's default
    is `mlruns/` in the folder the experiment is created from, which for a stage run in a flow
    run's workspace would be deleted with it.)"""
    if not uri.startswith("sqlite:///"):
        return None
    return str(Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns")


# Set by the Prefect task that runs a stage (tasks/stages.py), so the MLflow run and the version
# link back to the flow run that made them; absent when a stage runs by hand or under `dvc repro`.
# The registered model's tag naming the version that awaits a person's approval (promote.approval).
PENDING_TAG = "promotion.awaiting_approval"

ORCHESTRATOR_TAGS = {
    "MLPROJECT_FLOW_RUN_ID": "prefect_flow_run_id",
    "MLPROJECT_FLOW_RUN_URL": "prefect_flow_run_url",
    "MLPROJECT_RUN_OVERRIDES": "run_overrides",
    "MLPROJECT_PARENT_RUN_ID": "mlflow.parentRunId",  # a sweep's run: MLflow shows its trials under it
}


def orchestrator_tags() -> dict[str, str]:
    return {tag: os.environ[key] for key, tag in ORCHESTRATOR_TAGS.items() if os.environ.get(key)}


def ui_links(record: dict, uri: str) -> dict[str, str]:
    """Where the MLflow UI shows the run and the version of a registered.json record in store `uri`."""
    run = MlflowClient(tracking_uri=uri).get_run(record["run_id"])
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"  # `mlflow ui` on a file store
    return {
        "run": f"{base}/#/experiments/{run.info.experiment_id}/runs/{record['run_id']}",
        "version": f"{base}/#/models/{record['model_name']}/versions/{record['version']}",
    }


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
        data = {path: md5 for path, md5 in deps.items() if not path.startswith("mlproject")}  # not code
        if data:
            return data
    return {str(p): md5_of(p) for p in sorted(Path(tokens_dir).iterdir()) if p.is_file()}


# What a registered version needs to load and generate, copied beside it (MLflow puts it first on
# the import path when it loads the version), so each version runs with the code it was trained by.
# Besides, the package of the version's kind (epoch_log.kind_package).
PYFUNC_CODE = [
    "config.py",
    *(str(path.relative_to(PACKAGE)) for path in SHARED_CODE),
    "tracking/__init__.py",
    "tracking/pyfunc.py",
]


def pyfunc_code(staging: Path, kind: str) -> Path:
    """A copy of the package holding only PYFUNC_CODE and the kind's package; the register stage's
    deps name the same."""
    package = kind_package(kind).resolve().relative_to(PACKAGE.resolve())
    copy_paths([*PYFUNC_CODE, str(package)], PACKAGE, staging / "mlproject")
    return staging / "mlproject"


def run_standing_for(client: MlflowClient, run_id: str | None) -> str | None:
    """`run_id` when the store has it; else the run that stands for it there (made by register
    after the store was lost); else None."""
    if run_id is None:
        return None
    try:
        client.get_run(run_id)
        return run_id
    except mlflow.exceptions.MlflowException:
        pass
    stand_ins = mlflow.search_runs(
        filter_string=f"tags.stands_for_run = '{run_id}'", max_results=1, output_format="list"
    )
    return stand_ins[0].info.run_id if stand_ins else None


def run_in_store(client: MlflowClient, run_id: str, params: dict) -> str:
    """The training run, or, when the store no longer has it (deleted, or another store), the run
    standing for it, made now if there is none yet, carrying the same params."""
    found = run_standing_for(client, run_id)
    if found is not None:
        return found
    with mlflow.start_run() as run:
        mlflow.log_params(flat_params(params))
        mlflow.set_tags({"stands_for_run": run_id, "note": "the training run was not in this store"})
    print(
        f"register: the training run {run_id} is not in {mlflow.get_tracking_uri()}; "
        f"registering under a new run {run.info.run_id}",
        flush=True,
    )
    return run.info.run_id


def flat_params(params: dict, prefix: str = "") -> dict:
    """Nested params as MLflow params (`train.units`), lists and long values as text."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:500]
    return flat


def version_of_same_model(client: MlflowClient, name: str, run_id: str, model_md5: str):
    """The version already registered with these very model files from this training run (or
    from the run that stands for it in another store): the same model, registered again by a
    forced or repeated stage, or by a train rerun that only saved the same weights again."""
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get("model_md5") == model_md5 and run_id in (version.run_id, version.tags.get("training_run")):
            return version
    return None


def document_scores_artifact(validation_md5: str) -> str:
    """Where a run keeps what each document of the validation text with this MD5 cost its model."""
    return f"document_scores/{validation_md5}.json"


def register(config: MlflowConfig, run_id: str, paths: Paths, params: dict) -> dict:
    """Log the model behind the pyfunc interface to the training run and register a new version,
    unless this very model is registered already (then its version is the record). A version
    that cannot be completed (tagged and recorded) is deleted again: nothing is half-registered."""
    from mlproject.tracking.pyfunc import MODEL_ARTIFACT, TextGenerator, signature

    metrics = read_json(paths.metrics)
    scores = {
        k: metrics[k]
        for k in ("bits_per_byte", "bits_per_character", "perplexity", "vocabulary_byte_coverage")
        if k in metrics
    }
    writing = {k: v for k, v in (metrics.get("writing") or {}).items() if v is not None}
    # score_rule says which figures promotion may compare with these (evaluation.SCORE_RULE).
    figures = {
        "validation_md5": metrics["validation_md5"],
        "score_rule": str(metrics.get("score_rule")),
        **{k: str(v) for k, v in scores.items()},
        **{f"writing.{k}": str(v) for k, v in writing.items()},
    }
    documents = read_json(paths.document_scores)
    client, name, model_md5 = MlflowClient(), config.model_name, folder_md5(paths.model)
    existing = version_of_same_model(client, name, run_id, model_md5)
    if existing is not None:
        version = str(existing.version)
        for key, value in figures.items():  # the latest evaluation of this model
            client.set_model_version_tag(name, version, key, value)
        client.log_dict(existing.run_id, documents, document_scores_artifact(documents["validation_md5"]))
        client.update_model_version(name, version, description=card(client, existing.run_id, paths, existing.tags))
        record = write_record(paths, name, version, existing.run_id, existing.tags.get("git_commit", ""))
        return {**record, "registered_before": True}  # not in the file: the same record, so promote reruns nothing
    training_run, run_id = run_id, run_in_store(client, run_id, params)
    commit, dirty = git_commit()
    lineage = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        **orchestrator_tags(),
        **{f"data_md5:{path}": md5 for path, md5 in data_lineage(paths.tokens).items()},
    }
    described = {f"model_{key}": str(value) for key, value in read_json(paths.model / KIND_FILE).items()}
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as staging:
        mlflow.log_metrics({f"validation_{k}": v for k, v in scores.items()})
        mlflow.log_metrics({f"writing_{k}": v for k, v in writing.items()})
        mlflow.log_table(pd.DataFrame(read_jsonl(paths.samples)), artifact_file="samples.json")
        mlflow.log_artifact(paths.metrics)
        mlflow.log_dict(documents, document_scores_artifact(documents["validation_md5"]))
        mlflow.log_dict(params, "params.yaml")
        mlflow.set_tags({**lineage, **described})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TextGenerator(),
            artifacts={MODEL_ARTIFACT: str(paths.model)},
            code_paths=[str(pyfunc_code(Path(staging), described["model_kind"]))],
            signature=signature(),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    try:
        for key, value in {
            **lineage,
            **described,
            **figures,
            "model_md5": model_md5,
            "training_run": training_run,
        }.items():
            client.set_model_version_tag(name, version, key, value)
        client.update_model_version(name, version, description=card(client, run_id, paths, lineage))
        return write_record(paths, name, version, run_id, commit)
    except BaseException as error:
        client.delete_model_version(name, version)
        if not isinstance(error, Exception):  # Ctrl-C stays Ctrl-C
            raise
        raise StageFailed(
            f"{name} version {version}: not completed, so deleted again "
            f"({type(error).__name__}: {error}); {paths.registered} still names the "
            "version registered before"
        ) from error


def card(client: MlflowClient, run_id: str, paths: Paths, lineage: dict) -> str:
    """The version's model card (its MLflow description), from what the stage reads and the run's params."""
    from mlproject.tracking.model_card import model_card

    return model_card(
        read_json(paths.model / KIND_FILE),
        client.get_run(run_id).data.params,
        read_json(paths.metrics),
        read_jsonl(paths.samples),
        lineage,
    )


def write_record(paths: Paths, name: str, version: str, run_id: str, commit: str) -> dict:
    """registered.json: the version this stage stands for, read by promote."""
    record = {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "model_uri": f"models:/{name}/{version}",
        "git_commit": commit,
    }
    write_json(paths.registered, record)
    return record


def record_workspace(workspace: Path, tracking_uri: str | None, flow_run_id: str) -> str:
    """The workspace's dvc.lock (what ran on which data) on the MLflow run of the version it
    registered, so nothing is lost when the workspace is deleted; returns that run's id. (The
    run's overrides reach the run and the version as the tag run_overrides.)"""
    from mlproject.config import load_params

    params = load_params(workspace / "params.yaml")
    record = read_json(workspace / params.paths.registered)
    client = MlflowClient(tracking_uri=tracking_uri or store_uri(params.mlflow))
    client.log_artifact(record["run_id"], str(workspace / "dvc.lock"), f"flow-runs/{flow_run_id}")
    return record["run_id"]
