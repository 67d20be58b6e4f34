"""Register and promote against a real MLflow store in a SQLite file."""

import json
import shutil
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlproject.cli import main
from mlproject.config import EvaluateConfig, MlflowConfig, PromoteConfig, ScrapeConfig, Source, TokenizeConfig
from mlproject.data.scrape import scrape
from mlproject.data.tokens import Vocabulary, tokenize
from mlproject.fileio import read_json
from mlproject.models import kinds
from mlproject.models.keras_rnn.network import build_network, set_seed
from mlproject.models.keras_rnn.rnn import RecurrentModel
from mlproject.models.keras_rnn.settings import RnnTraining
from mlproject.stages.evaluate import evaluate
from mlproject.tracking.comparison import table, version_rows
from mlproject.tracking.promotion import answer_approval, decide, promote
from mlproject.tracking.pyfunc import load_version
from mlproject.tracking.registry import connect, register
from tests.conftest import ROOT, SAMPLE_CORPUS, paths_in

TINY = RnnTraining(units=32, embedding_dim=16, sequence_length=40, batch_size=32, epochs=2, max_steps_per_epoch=25)
EVALUATE = EvaluateConfig(streams=8, sample_length=20, temperatures=[1.0], sample_prompts=["El "])
NAME = MlflowConfig().model_name


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Token files and three saved models: a trained one, the same nudged, and an untrained (far
    worse) one."""
    root = tmp_path_factory.mktemp("models")
    layout = paths_in(
        root, raw_documents="raw.jsonl", accepted_documents="raw.jsonl", tokens="tokens", model_dir="trained"
    )
    scrape(ScrapeConfig(sources=[Source(name="s", location=str(SAMPLE_CORPUS))]), layout)
    tokenize(TokenizeConfig(), layout)
    RecurrentModel.train(TINY, 1, layout)
    # The trained model with its output layer nudged at random: a little better on the whole
    # validation text, worse on some of its documents.
    nudged = kinds.load(layout.model)
    output = nudged.network.layers[-1]
    kernel, bias = output.get_weights()
    output.set_weights([kernel + np.random.default_rng(1).normal(0, 0.03, kernel.shape).astype(kernel.dtype), bias])
    kinds.save(nudged, root / "nudged" / "model")
    set_seed(1)
    vocabulary = Vocabulary.load(root / "tokens" / "vocab.json")
    kinds.save(RecurrentModel(build_network(TINY, len(vocabulary)), vocabulary, TINY), root / "untrained" / "model")
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch, bundles):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    connect(MlflowConfig())
    shutil.copytree(bundles / "tokens", tmp_path / "data" / "tokens")
    shutil.copy(bundles / "data" / "word_8grams.npy", tmp_path / "data" / "word_8grams.npy")
    return tmp_path


def register_and_promote(workdir, bundles, which: str, margin: float = 0.0, **settings) -> dict:
    paths = paths_in(workdir, model_dir=bundles / which)
    evaluate(EVALUATE, 1, paths, ["es"])
    with mlflow.start_run() as run:
        pass
    register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})
    return promote(PromoteConfig(min_improvement_bpb=margin, **settings), MlflowConfig(), EVALUATE, paths)


def champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


def test_first_model_becomes_champion_and_carries_lineage(workdir, bundles):
    report = register_and_promote(workdir, bundles, "untrained")
    assert report["decision"] == "promoted" and champion() == "1"
    tags = MlflowClient().get_model_version(NAME, "1").tags
    assert tags["git_commit"] and tags["validation_md5"] == report["validation_md5"]
    assert any(key.startswith("data_md5:") for key in tags)
    assert tags["model_kind"] == "rnn"
    assert read_json(workdir / "reports" / "promotion.json")["decision"] == "promoted"


def test_better_model_is_promoted_and_worse_is_not(workdir, bundles):
    register_and_promote(workdir, bundles, "untrained")
    better = register_and_promote(workdir, bundles, "trained")
    assert better["decision"] == "promoted" and champion() == "2"
    assert better["candidate_bits_per_byte"] < better["champion_bits_per_byte"]
    assert better["difference"]["high"] < 0 and better["reason"].startswith("better beyond doubt: -")
    assert better["champion_figure"] == "recorded"  # its figures per document, logged when it was registered
    worse = register_and_promote(workdir, bundles, "untrained")
    assert worse["decision"] == "challenger" and champion() == "2"
    assert str(MlflowClient().get_model_version_by_alias(NAME, "challenger").version) == "3"
    assert MlflowClient().get_model_version(NAME, "3").tags["promotion.decision"] == "challenger"


def test_a_candidate_better_by_less_than_its_interval_stays_challenger(workdir, bundles):
    register_and_promote(workdir, bundles, "trained")
    report = register_and_promote(workdir, bundles, "nudged")
    assert report["candidate_bits_per_byte"] < report["champion_bits_per_byte"]  # ahead on the whole text,
    difference = report["difference"]
    assert difference["low"] < difference["bits_per_byte"] < 0 < difference["high"]
    assert report["decision"] == "challenger" and champion() == "1"  # but not beyond doubt
    words = f"{difference['bits_per_byte']:+.4f} [{difference['low']:+.4f}, {difference['high']:+.4f}]"
    assert report["reason"] == f"not better beyond doubt: {words} bits per byte (95% interval, margin 0.0)"
    version = MlflowClient().get_model_version(NAME, "2")
    assert version.tags["promotion.difference_bpb"] == words
    assert version.description.endswith(f"**Promotion:** challenger against champion version 1: {report['reason']}.\n")
    assert "**Validation:**" in version.description  # the card register wrote, the promotion added to it
    shown = table(version_rows(MlflowClient(), NAME)).splitlines()
    assert "vs champion (95%)" in shown[0] and words in shown[2]  # newest first


def test_a_candidate_whose_samples_loop_more_than_allowed_is_refused_naming_the_figure(workdir, bundles):
    register_and_promote(workdir, bundles, "untrained")
    report = register_and_promote(workdir, bundles, "trained", max_repeat_share=0.01)
    repeat = report["writing"]["repeat_share"]
    assert report["decision"] == "challenger" and champion() == "1"
    assert report["reason"].startswith(
        f"refused: its samples' repeat_share is {repeat:.3f}, above promote.max_repeat_share = 0.01 "
        "(on bits per byte: better beyond doubt: -"
    )
    version = MlflowClient().get_model_version(NAME, "2")
    assert float(version.tags["writing.repeat_share"]) == repeat
    assert "**Writing:** " in version.description and "distinct-2" in version.description
    run = MlflowClient().get_run(version.run_id).data
    assert run.metrics["writing_repeat_share"] == repeat and run.metrics["writing_samples"] == 1
    shown = table(version_rows(MlflowClient(), NAME)).splitlines()
    assert "copied" in shown[0] and f"{repeat:.1%}" in shown[2]


def challenger() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "challenger").version)


def test_with_approval_required_a_better_candidate_awaits_a_person_and_approving_makes_it_champion(
    workdir, bundles, capsys
):
    register_and_promote(workdir, bundles, "untrained")
    report = register_and_promote(workdir, bundles, "trained", approval="required")
    assert report["decision"] == "awaiting approval" and champion() == "1"
    assert report["reason"].startswith("better beyond doubt: -") and "awaits approval until " in report["reason"]
    assert "mlproject approve 2, or reject it" in report["reason"]
    with pytest.raises(MlflowException):  # no alias moved: version 2 is neither champion nor challenger
        MlflowClient().get_model_version_by_alias(NAME, "challenger")
    params = str(ROOT / "params.yaml")
    # An answer for another version is refused in one line, and changes nothing.
    capsys.readouterr()
    assert main(["approve", "1", "--params", params]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mlproject approve: error: version 1 of {NAME} is not awaiting approval (version 2 is); nothing changed"
    )
    assert main(["approve", "2", "--by", "ana", "--params", params]) == 0
    assert "approve: version 2 -> promoted: approved by ana (champion: version 2)" in capsys.readouterr().out
    assert champion() == "2" and challenger() == "1"
    tags = MlflowClient().get_model_version(NAME, "2").tags
    assert tags["promotion.approval"].startswith("approved by ana, at ") and tags["promotion.decision"] == "promoted"
    assert main(["reject", "2", "--params", params]) == 2  # answered once
    assert "(none is)" in capsys.readouterr().err


def test_a_rejected_candidate_or_one_answered_too_late_stays_challenger(workdir, bundles):
    register_and_promote(workdir, bundles, "untrained")
    register_and_promote(workdir, bundles, "trained", approval="required")
    rejected = answer_approval(NAME, "2", False, "ana")
    assert (rejected["decision"], rejected["reason"]) == ("challenger", "rejected by ana")
    assert champion() == "1" and challenger() == "2"
    # Version 3 awaits until its deadline; an approval after it leaves it challenger.
    register_and_promote(workdir, bundles, "nudged", approval="required", approval_timeout="1m")
    if MlflowClient().get_registered_model(NAME).tags.get("promotion.awaiting_approval") != "3":
        pytest.fail("the nudged model is not better beyond doubt than the untrained one")
    late = answer_approval(NAME, "3", True, "ana", now=datetime.now(timezone.utc) + timedelta(minutes=2))
    assert late["decision"] == "challenger" and late["reason"].startswith("no answer before its deadline, ")
    assert champion() == "1" and challenger() == "3"


def test_an_approval_after_the_champion_changed_leaves_the_candidate_challenger(workdir, bundles):
    register_and_promote(workdir, bundles, "untrained")
    register_and_promote(workdir, bundles, "nudged", approval="required")  # awaits, against version 1
    register_and_promote(workdir, bundles, "trained")  # no approval asked: champion at once
    assert champion() == "3"
    outcome = answer_approval(NAME, "2", True, "ana")
    assert outcome["decision"] == "challenger"
    assert "the champion is version 3 now, not the version 1 it was compared with" in outcome["reason"]
    assert champion() == "3"


def test_margin_keeps_a_barely_better_model_out(workdir, bundles):
    register_and_promote(workdir, bundles, "untrained")
    report = register_and_promote(workdir, bundles, "trained", margin=100.0)
    assert report["decision"] == "challenger" and champion() == "1"


def test_champion_is_rescored_when_validation_text_changed(workdir, bundles):
    register_and_promote(workdir, bundles, "trained")
    recorded = float(MlflowClient().get_model_version(NAME, "1").tags["bits_per_byte"])
    validation = workdir / "data" / "tokens" / "validation.txt"
    half = len(validation.read_text()) // 2
    validation.write_text(validation.read_text()[:half])
    documents = workdir / "data" / "tokens" / "validation_documents.json"  # the documents in that half
    documents.write_text(json.dumps({"starts": [s for s in json.loads(documents.read_text())["starts"] if s < half]}))
    report = register_and_promote(workdir, bundles, "untrained")
    assert report["champion_figure"].startswith("re-scored")
    assert report["champion_bits_per_byte"] != pytest.approx(recorded, abs=1e-9)
    assert report["decision"] == "challenger" and champion() == "1"


def test_a_champion_scored_under_the_old_rule_is_never_compared_until_rescored(workdir, bundles, capsys):
    from mlproject.cli import main

    register_and_promote(workdir, bundles, "untrained")
    client = MlflowClient()
    client.delete_model_version_tag(NAME, "1", "score_rule")  # as registered before the rule existed
    report = register_and_promote(workdir, bundles, "trained")  # better, on the same validation text
    assert report["decision"] == "not compared" and champion() == "1"
    assert "champion version 1 was scored before every byte was paid for" in report["reason"]
    assert "challenger" not in client.get_registered_model(NAME).aliases  # no alias moved
    assert read_json(workdir / "reports" / "promotion.json")["decision"] == "not compared"
    # The command line says so in one line, and --rescore-champion compares them.
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(streams=8)  # how the champion is re-scored: as EVALUATE does
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["promote"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("promote: version 2 not compared: champion version 1 was")
    assert main(["promote", "--rescore-champion"]) == 0
    assert champion() == "2" and "re-scored" in read_json(workdir / "reports" / "promotion.json")["champion_figure"]


def test_a_candidate_whose_figure_skips_text_is_not_compared(workdir, bundles):
    import json

    register_and_promote(workdir, bundles, "untrained")
    paths = paths_in(workdir, model_dir=bundles / "trained")
    evaluate(EVALUATE, 1, paths)
    metrics = read_json(paths.metrics)
    (workdir / "reports" / "metrics.json").write_text(json.dumps({**metrics, "score_rule": None}))
    with mlflow.start_run() as run:
        pass
    register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})
    report = promote(PromoteConfig(), MlflowConfig(), EVALUATE, paths)
    assert report["decision"] == "not compared" and champion() == "1"
    assert "not measured under the rule every-byte" in report["reason"]


def test_registered_model_generates_through_the_pyfunc(workdir, bundles):
    import sys

    import pandas as pd

    register_and_promote(workdir, bundles, "trained")
    path = list(sys.path)
    model = load_version(f"models:/{NAME}@champion")
    # The version's own copy of the code is off the path again: a process started from this one
    # (a Dask worker) imports mlproject from the checkout, whatever kind it loads next.
    assert sys.path == path
    frame = model.predict(
        pd.DataFrame({"prompt": ["El ", "Quien "]}), params={"max_length": 15, "temperature": 0.8, "seed": 3}
    )
    assert list(frame["prompt"]) == ["El ", "Quien "] and all(len(t) == 15 for t in frame["text"])


@pytest.mark.parametrize(
    "candidate, champion_bpb, margin, expected",
    [
        (2.0, None, 0.0, True),
        (1.9, 2.0, 0.0, True),
        (2.0, 2.0, 0.0, False),
        (2.1, 2.0, 0.0, False),
        (1.95, 2.0, 0.1, False),
    ],
)
def test_decide(candidate, champion_bpb, margin, expected):
    assert decide(candidate, champion_bpb, margin)[0] is expected


def test_the_pyfunc_refuses_bad_settings_and_prompts_and_reads_temperature_zero_as_greedy(workdir, bundles):
    import pandas as pd

    from mlproject.config import ConfigError

    register_and_promote(workdir, bundles, "trained")
    model = load_version(f"models:/{NAME}@champion")
    frame = pd.DataFrame({"prompt": ["El "]})
    for params, message in [
        ({"temperature": -1.0}, "params.temperature = -1.0: expected a value >= 0.0"),
        ({"top_p": 1.5}, "params.top_p = 1.5: expected a value <= 1.0"),
        ({"top_k": -3}, "params.top_k = -3: expected a value >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            model.predict(frame, params=params)
    with pytest.raises(ConfigError, match="prompt 1 = (None|nan): expected text"):  # MLflow reads None as NaN
        model.predict(pd.DataFrame({"prompt": ["El ", None]}), params={"max_length": 5})
    greedy = [
        model.predict(frame, params={"max_length": 20, "temperature": 0.0, "seed": seed})["text"][0] for seed in (1, 2)
    ]
    assert greedy[0] == greedy[1] == model.predict(frame, params={"max_length": 20, "top_k": 1})["text"][0]


def test_registering_the_same_model_again_makes_no_new_version(workdir, bundles):
    paths = paths_in(workdir, model_dir=bundles / "trained")
    evaluate(EVALUATE, 1, paths)
    with mlflow.start_run() as run:
        pass
    first = register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})
    again = register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})
    assert again["version"] == first["version"] == "1" and again["registered_before"]
    assert len(MlflowClient().search_model_versions(f"name = '{NAME}'")) == 1
    assert read_json(paths.registered)["version"] == "1"
    # Another training run of the same code and data is another model: a new version.
    with mlflow.start_run() as other:
        pass
    assert register(MlflowConfig(), other.info.run_id, paths, {"seed": 1})["version"] == "2"


def test_a_version_that_cannot_be_recorded_is_deleted_and_the_record_is_kept(workdir, bundles):
    from mlproject.config import StageFailed

    paths = paths_in(workdir, model_dir=bundles / "trained")
    evaluate(EVALUATE, 1, paths)
    with mlflow.start_run() as run:
        pass
    Path(paths.registered).mkdir(parents=True)  # a record that cannot be written once MLflow made the version
    with pytest.raises(StageFailed, match=f"{NAME} version 1: not completed, so deleted again"):
        register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})
    assert MlflowClient().search_model_versions(f"name = '{NAME}'") == []
    Path(paths.registered).rmdir()
    assert register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})["version"] == "2"
    assert len(MlflowClient().search_model_versions(f"name = '{NAME}'")) == 1


def test_a_lost_training_run_is_registered_under_one_stand_in_however_often_register_runs(workdir, bundles):
    paths = paths_in(workdir, model_dir=bundles / "trained")
    evaluate(EVALUATE, 1, paths)
    lost = "0" * 32  # a run id the store never had
    first = register(MlflowConfig(), lost, paths, {"seed": 1})
    again = register(MlflowConfig(), lost, paths, {"seed": 1})
    assert again["version"] == first["version"] == "1" and again["registered_before"]
    assert again["run_id"] == first["run_id"] != lost
    assert MlflowClient().get_run(first["run_id"]).data.tags["stands_for_run"] == lost


def test_two_promotes_at_once_end_with_the_better_champion_and_the_other_challenger(workdir, bundles):
    """Two runs finish together: both promote commands start while another promotion holds the
    lock, both wait for it (neither decides on a champion the other is about to replace), and when
    it is released the better model is champion and the worse challenger, whichever went first."""
    import os
    import subprocess
    import sys

    from mlproject.tracking.promotion import LOCK_SUFFIX

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(streams=8)
    runs = {}
    for which in ("untrained", "trained"):  # registered in this order: versions 1 and 2
        run_dir = workdir / which
        shutil.copytree(workdir / "data", run_dir / "data")
        (run_dir / "params.yaml").write_text(yaml.safe_dump(params))
        paths = paths_in(run_dir, model_dir=bundles / which)
        evaluate(EVALUATE, 1, paths)
        with mlflow.start_run() as run:
            pass
        runs[which] = (run_dir, register(MlflowConfig(), run.info.run_id, paths, {"seed": 1})["version"])
    client = MlflowClient()
    lock = f"{NAME}{LOCK_SUFFIX}"
    # Held as a living process on this machine holds it: by this test's own process.
    client.create_registered_model(
        lock, tags={"holder": json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})}
    )
    promotes = {
        which: subprocess.Popen(
            [sys.executable, "-m", "mlproject.cli", "promote"],
            cwd=run_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ,
        )
        for which, (run_dir, _) in runs.items()
    }
    try:
        for process in promotes.values():
            said = []
            while not (said and said[-1].startswith(f"promote: waiting for the promotion lock {lock}")):
                said.append(process.stdout.readline())
                assert said[-1], "".join(said)  # it ended without waiting
        assert not any((run_dir / "reports" / "promotion.json").exists() for run_dir, _ in runs.values())
        assert "champion" not in client.get_registered_model(NAME).aliases
        client.delete_registered_model(lock)
        outputs = {which: process.communicate(timeout=120)[0] for which, process in promotes.items()}
    finally:
        for process in promotes.values():
            process.kill()
    assert all(process.returncode == 0 for process in promotes.values()), outputs
    assert champion() == runs["trained"][1]
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == runs["untrained"][1]
    assert [m.name for m in client.search_registered_models()] == [NAME]  # the lock is gone


def test_a_promotion_lock_left_by_a_dead_process_is_taken(workdir, bundles):
    import subprocess

    from mlproject.tracking.promotion import LOCK_SUFFIX

    dead = subprocess.Popen(["true"])  # a process id no one holds any more
    dead.wait()
    MlflowClient().create_registered_model(
        f"{NAME}{LOCK_SUFFIX}",
        tags={"holder": json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": time.time()})},
    )
    assert register_and_promote(workdir, bundles, "trained")["decision"] == "promoted"
    assert [m.name for m in MlflowClient().search_registered_models()] == [NAME]
