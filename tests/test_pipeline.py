"""The real `dvc repro` on a tiny corpus and model, in a temporary git repository."""

import hashlib
import json
from pathlib import Path

import yaml
from mlflow import MlflowClient

from mlproject.cli import STAGES
from tests.conftest import ROOT, git, run, write_params

OUTPUTS = [
    "data/raw/documents.jsonl",
    "reports/scrape.json",
    "data/validated/documents.jsonl",
    "data/rejected/documents.jsonl",
    "reports/validation.json",
    "reports/data_docs/index.html",
    "data/tokens/vocab.json",
    "data/tokens/train.npy",
    "data/tokens/validation.txt",
    "models/model/model.keras",
    "models/run.json",
    "reports/training.csv",
    "reports/metrics.json",
    "reports/samples.jsonl",
    "reports/registered.json",
    "reports/promotion.json",
    "outputs/generations.jsonl",
]


def ran(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def digests(root: Path, folder: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and "http_cache" not in p.parts
    }


def assert_a_clone_pulls_the_whole_workspace(project: Path, elsewhere: Path) -> None:
    """`dvc push` to the default remote (.dvc/config), then a clone elsewhere `dvc pull`s every
    product and finds nothing to rerun."""
    git(project, "add", "dvc.lock")
    git(project, "commit", "-qm", "what ran")
    pushed = run(["dvc", "push"], project)  # up to date where a flow run on this project pushed it all already
    assert ("pushed" in pushed.stdout or "up to date" in pushed.stdout) and (project / "dvc-remote").is_dir()

    clone = elsewhere / "worker"
    git(elsewhere, "clone", "-q", str(project), str(clone))
    # Another machine mounts the team's remote folder where it likes; the clone points there.
    run(["dvc", "remote", "modify", "--local", "local", "url", str(project / "dvc-remote")], clone)
    run(["dvc", "pull"], clone)
    for products in ("data", "reports", "outputs"):
        assert digests(clone, products) == digests(project, products) and digests(clone, products)
    assert digests(clone, "models/model") == digests(project, "models/model")
    assert "up to date" in run(["dvc", "status"], clone).stdout


def test_dvc_repro_runs_the_whole_pipeline_then_skips_what_is_unchanged(reproduced, tmp_path_factory):
    project, first, _ = reproduced
    assert ran(first) == STAGES
    for output in OUTPUTS:
        assert (project / output).is_file(), output

    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert 0 < metrics["bits_per_byte"] < metrics["bits_per_character"] < 8
    assert metrics["characters"] > 1000
    training = (project / "reports/training.csv").read_text().splitlines()
    assert training[0] == "epoch,loss,val_loss" and len(training) == 3

    params = yaml.safe_load((project / "params.yaml").read_text())
    uri = params["mlflow"]["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("text-generator", "champion")
    assert str(champion.version) == json.loads((project / "reports/registered.json").read_text())["version"] == "1"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    tokens_md5 = {d["path"]: d["md5"] for d in lock["stages"]["train"]["deps"]}["data/tokens"]
    assert champion.tags["data_md5:data/tokens"] == tokens_md5
    assert len(champion.tags["git_commit"]) == 40
    assert champion.tags["git_dirty"] == "false"  # a committed project: `dvc repro` changed nothing git tracks
    run_params = client.get_run(champion.run_id).data.params
    assert run_params["train.units"] == "32" and run_params["seed"] == str(params["seed"])

    generations = [json.loads(line) for line in (project / "outputs/generations.jsonl").read_text().splitlines()]
    prompts = [line for line in (project / "prompts/default.txt").read_text().splitlines() if line.strip()]
    assert [g["prompt"] for g in generations] == prompts
    assert all(g["model_version"] == "1" and len(g["text"]) == 40 for g in generations)

    again = run(["dvc", "repro"], project)
    assert ran(again.stdout) == []
    assert_a_clone_pulls_the_whole_workspace(project, tmp_path_factory.mktemp("elsewhere"))

    # A sampling param reruns generation only; the model is not retrained.
    params["generate"]["temperature"] = 0.3
    write_params(project, params)
    third = run(["dvc", "repro"], project)
    assert ran(third.stdout) == ["generate"]
    assert ran(run(["dvc", "repro"], project).stdout) == []


def test_nothing_the_setup_generates_is_tracked_by_git():
    """`make setup` writes .venv/ and the editable install's mlproject.egg-info/ into the clone;
    were either tracked, every version registered from a fresh clone would be tagged git_dirty."""
    for generated in (".venv", "mlproject.egg-info"):
        assert git(ROOT, "ls-files", generated).stdout == "", generated
        assert git(ROOT, "check-ignore", generated).stdout.strip() == generated


def test_a_failed_rerun_loses_no_output_and_the_fixed_params_rerun_nothing(reproduced):
    project = reproduced.project
    products = ("data", "models/model", "models/run.json", "reports", "outputs")
    before = {folder: digests(project, folder) for folder in products if (project / folder).is_dir()}
    before["models/run.json"] = (project / "models/run.json").read_bytes()
    good = (project / "params.yaml").read_text()

    def after_a_typo(key: str, value: str) -> None:
        params = yaml.safe_load(good)
        *sections, name = key.split(".")
        place = params
        for section in sections:
            place = place[section]
        place[name] = value
        write_params(project, params)
        failed = run(["dvc", "repro"], project, check=False)
        assert failed.returncode != 0 and f"{key} = {value!r}" in failed.stderr + failed.stdout
        (project / "params.yaml").write_text(good)

    def unchanged() -> None:
        now = {folder: digests(project, folder) for folder in products if (project / folder).is_dir()}
        now["models/run.json"] = (project / "models/run.json").read_bytes()
        assert now == before

    # Fixed, the next `dvc repro` puts back what the failed stage removed: no retraining, no new version.
    after_a_typo("train.rnn.cell", "gruu")
    assert not (project / "models/model").exists()  # DVC removes a stage's outputs before running it
    fixed = run(["dvc", "repro"], project)
    assert ran(fixed.stdout) == [], fixed.stdout
    unchanged()
    # Or `dvc checkout` puts every output back at once, the reports and the run record included.
    after_a_typo("train.rnn.cell", "gruu")
    run(["dvc", "checkout"], project)
    unchanged()
    assert ran(run(["dvc", "repro"], project).stdout) == []
    # A forced train finds its finished checkpoint and saves the same bytes: nothing downstream reruns.
    assert "resuming from the checkpoint" in run(["dvc", "repro", "-f", "-s", "train"], project).stdout
    assert ran(run(["dvc", "repro"], project).stdout) == []
    unchanged()


def test_a_lost_tracking_store_is_named_and_the_stated_commands_bring_a_champion_back(reproduced):
    project = reproduced.project
    (project / "mlflow.db").unlink()
    lost = run(["mlproject", "generate"], project, check=False)
    errors = [line for line in lost.stderr.splitlines() if line.startswith("mlproject generate:")]
    assert lost.returncode == 2 and len(errors) == 1, lost.stderr  # MLflow logs that it made a new store
    assert "models:/text-generator@champion: not in the tracking store" in errors[0]
    assert "dvc repro -f -s register" in errors[0]
    registered = run(["dvc", "repro", "-f", "-s", "register"], project)
    assert "is not in sqlite:" in registered.stdout and "registering under a new run" in registered.stdout
    again = run(["dvc", "repro"], project)
    assert ran(again.stdout)[0] == "promote"  # generate reruns only if the promotion record changed
    assert (
        "generate: 8 texts from text-generator@champion (version 1)" in run(["mlproject", "generate"], project).stdout
    )
    # Read in a fresh process: this one's MLflow client still holds the deleted database open.
    record = json.loads((project / "reports/registered.json").read_text())
    uri = yaml.safe_load((project / "params.yaml").read_text())["mlflow"]["tracking_uri"]
    described = run(
        ["mlflow", "runs", "describe", "--run-id", record["run_id"]], project, env={"MLFLOW_TRACKING_URI": uri}
    )
    tags = json.loads(described.stdout[described.stdout.index("{") :])["data"]["tags"]
    assert record["version"] == "1" and tags["model_kind"] == "rnn" and tags["stands_for_run"]
    # The checkpoint still names the lost run: a forced train tracks itself under its stand-in,
    # and register finds the same model already registered there.
    trained = run(["dvc", "repro", "-f", "-s", "train"], project)
    assert f"tracking this training under its stand-in {record['run_id']}" in trained.stdout
    again = run(["dvc", "repro"], project)
    assert ran(again.stdout) == ["register"] and "registered before, so no new version" in again.stdout
