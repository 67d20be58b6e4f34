"""Comparison at a glance: the same names logged by every kind, a model card per version,
`mlproject compare`, and the MLflow UI read in a real browser."""

from __future__ import annotations

import dataclasses
import json
import math
import signal

import pytest
from mlflow import MlflowClient

from infra.servers import free_port
from mlproject.models.settings import SHARED
from mlproject.tracking.comparison import VersionRow, differing_params, verdict
from mlproject.tracking.model_card import model_card
from tests.conftest import run, server_process, tiny_params, write_params

NAME = "text-generator"


def client(store: str) -> MlflowClient:
    return MlflowClient(tracking_uri=store, registry_uri=store)


def test_every_kind_logs_the_same_names_its_kind_and_its_data(two_versions):
    mlflow = client(two_versions.store)
    runs = [mlflow.get_run(mlflow.get_model_version(NAME, v).run_id).data for v in ("1", "2")]
    assert [r.tags["model_kind"] for r in runs] == ["rnn", "gpt"]
    # The shared settings under the same names in every kind's run, and each kind's own beside them.
    shared = {f"train.{key}" for key in SHARED} | {"train.runner", "seed", "tokenize.level"}
    assert shared <= set(runs[0].params) & set(runs[1].params)
    assert {"train.units", "train.cell"} <= set(runs[0].params) - set(runs[1].params)
    assert {"train.heads", "train.vocab_size"} <= set(runs[1].params) - set(runs[0].params)
    for data in runs:
        assert {"validation_bits_per_byte", "validation_bits_per_character", "training_seconds", "val_loss"} <= set(
            data.metrics
        )
        assert any(key.startswith("data_md5:") for key in data.tags)


def test_each_version_carries_a_model_card(two_versions):
    card = client(two_versions.store).get_model_version(NAME, "2").description
    assert "A `gpt` text generator" in card and "bits per byte" in card
    assert "| `train.layers` | 2 |" in card and "data/tokens/" in card and "prompt `'El '`" in card
    assert "| `tokenize.document_separator` | \\n\\n |" in card  # a newline cannot break the table


def test_a_model_card_names_its_data_figures_and_samples():
    metrics = {
        "bits_per_byte": 1.5,
        "bits_per_character": 1.6,
        "perplexity": 3.0,
        "characters": 1000,
        "bytes": 1020,
        "validation_md5": "abcdef0123456789",
    }
    card = model_card(
        {"kind": "rnn", "cell": "gru"},
        {"train.units": "32", "sep": "a|b"},
        metrics,
        [{"prompt": "El ", "temperature": 0.5, "text": "amor\nes"}],
        {"git_commit": "0123456789abc", "git_dirty": "true", "data_md5:data/tokens/train.npy": "f00"},
    )
    assert "A `rnn` text generator (cell gru)" in card and "**1.5000 bits per byte**" in card
    assert "`data/tokens/train.npy`: MD5 `f00`" in card and "amor es" in card
    assert "commit `0123456789` (with uncommitted changes)" in card and "| `train.units` | 32 |" in card
    assert "| `sep` | a\\|b |" in card


def row(version: str, bpb: float, aliases=(), **params) -> VersionRow:
    return VersionRow(
        version=version,
        aliases=list(aliases),
        kind="rnn",
        bits_per_byte=bpb,
        bits_per_character=bpb,
        perplexity=2.0,
        training_seconds=1.0,
        data_hash="d",
        git_commit="c",
        run_id=version,
        promotion="first model",
        params=params,
    )


def test_only_the_params_that_differ_are_listed():
    rows = [row("1", 1.0, units="32", cell="gru"), row("2", 1.1, units="64", cell="gru"), row("3", 1.2, cell="gru")]
    assert differing_params(rows) == ["units"]
    # A setting only one row's kind has is told by the kind column, not listed.
    assert differing_params([*rows, row("4", 1.3, heads="2")]) == ["units"]


def test_a_loss_in_nats_per_token_becomes_bits_per_byte_through_the_tokens_per_byte():
    # 2 tokens per byte: a loss of ln 2 nats per token is 2 bits per byte (and perplexity 2 per token).
    assert row("1", 2.0).bits_per_byte_per_nat * math.log(2) == pytest.approx(2.0)
    assert dataclasses.replace(row("1", 2.0), perplexity=None).bits_per_byte_per_nat is None


def test_the_verdict_says_why_the_champion_is_champion():
    assert "the lowest bits per byte listed" in verdict([row("2", 1.0, ["champion"]), row("1", 1.2)])
    assert "v3 scores lower" in verdict([row("2", 1.0, ["champion"]), row("3", 0.9)])
    assert "no version holds the alias champion" in verdict([row("1", 1.0)])
    old_rule = dataclasses.replace(row("3", 0.5), comparable=False)  # registered before every byte was paid for
    assert "the lowest bits per byte listed" in verdict([row("2", 1.0, ["champion"]), old_rule])


def test_compare_prints_one_table_and_writes_the_curves(two_versions, tmp_path):
    result = run(["mlproject", "compare", "--params", str(two_versions.params)], two_versions.project)
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("version"))
    assert all(
        column in header
        for column in (
            "alias",
            "kind",
            "bits/byte",
            "bits/char",
            "in vocab",
            "train time",
            "data",
            "commit",
            "params that differ",
        )
    )
    v1, v2 = (next(line for line in lines if line.startswith(f"{v} ")) for v in ("1", "2"))
    assert " 100.0% " in v2 and "†" not in v1 + v2  # the GPT's byte-level BPE covers every byte; both new
    assert "champion" in v1 and " rnn " in v1 and "challenger" in v2 and " gpt " in v2
    assert "train.kind=gpt" in v2 and "train.kind=rnn" in v1 and "train.units=" not in v1 + v2  # the same in both
    assert "champion v1:" in result.stdout and "promote said:" in result.stdout
    png, html = (two_versions.project / f"reports/comparison.{suffix}" for suffix in ("png", "html"))
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert "v1 @champion (rnn)" in html.read_text() and "cdn.jsdelivr" not in html.read_text()


def test_compare_names_an_empty_store(tmp_path):
    params = write_params(tmp_path, tiny_params(tmp_path))  # a new store
    result = run(["mlproject", "compare", "--params", str(params)], tmp_path, check=False)
    last = result.stderr.splitlines()[-1]  # after MLflow's own note that it made the new store's tables
    assert result.returncode == 2 and last.startswith(
        "mlproject compare: error: mlflow.model_name = text-generator: no registered version"
    )


def as_the_mlflow_ui_shows(value: float) -> str:
    # The UI's Utils.formatMetric: 3 decimals below 10 (bits per byte are), trailing zeros dropped.
    return f"{value:.3f}".rstrip("0").rstrip(".")


def test_the_mlflow_ui_lists_both_versions_and_compares_their_bits_per_byte(two_versions, tmp_path, browser_page):
    from playwright.sync_api import expect

    mlflow = client(two_versions.store)
    runs = [mlflow.get_run(mlflow.get_model_version(NAME, v).run_id) for v in ("1", "2")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        two_versions.store,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with server_process(command, two_versions.project, f"{url}/health", tmp_path / "mlflow-ui.log", signal.SIGTERM):
        page = browser_page.page
        page.goto(f"{url}/#/models/{NAME}")
        # Each alias in its own version's row (the tags mention "champion" too).
        for version, alias in (("1", "champion"), ("2", "challenger")):
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Version {version}", exact=True))
            expect(row).to_contain_text(f"@ {alias}")
        browser_page.screenshot(tmp_path / "mlflow-model.png")

        ids = json.dumps([r.info.run_id for r in runs])
        experiments = json.dumps(sorted({r.info.experiment_id for r in runs}))
        page.goto(f"{url}/#/compare-runs?runs={ids}&experiments={experiments}")
        expect(page.get_by_text("Comparing 2 Runs")).to_be_visible()
        name = page.get_by_text("validation_bits_per_byte", exact=True)
        shown = [as_the_mlflow_ui_shows(run.data.metrics["validation_bits_per_byte"]) for run in runs]
        figures = [page.get_by_role("grid").get_by_text(figure, exact=True) for figure in shown]
        # Metric names and values are two grids of 300 px; a person scrolls the values with the wheel to the
        # figures' row and the names follow, one scroll event late in MLflow 3.17: a last small step brings them
        # level.
        values = figures[0].locator("xpath=ancestor::div[@role='grid']")
        values.hover()
        page.mouse.wheel(0, figures[0].bounding_box()["y"] - values.bounding_box()["y"])
        page.mouse.wheel(0, -1)
        for figure in figures:
            expect(figure).to_be_in_viewport()
            assert abs(figure.bounding_box()["y"] - name.bounding_box()["y"]) < 10, "off its name's line (rows: 45 px)"
        browser_page.screenshot(tmp_path / "mlflow-compare.png")
        assert browser_page.blocked == []  # the UI and its telemetry talk only to the local server
