"""The benchmarks still run: once, at a tiny size. Nothing is asserted about speed."""

import json
import math
import subprocess
import sys

from tests.conftest import ROOT


def test_benchmarks_run_at_tiny_size_and_write_every_section(tmp_path, reproduced):
    out = tmp_path / "RESULTS.md"
    # The overhead on the tests' shared tiny project, which needs no second whole pipeline run.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--size",
            "tiny",
            "--out",
            str(out),
            "--project",
            str(reproduced.project),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    for heading in (
        "1. Training throughput",
        "2. Generation throughput",
        "3. Evaluation throughput",
        "4. Pipeline overhead",
        "5. Quality for time",
        "6. Peak memory",
        "7. Transformers path",
    ):
        assert heading in text
    figures = json.loads(out.with_suffix(".json").read_text())
    assert all(r["keras"] > 0 and r["torch"] > 0 for r in figures["training"])
    assert [r["batch"] for r in figures["generation"]] == [1, 4]
    assert figures["overhead"]["dvc_noop_s"] > 0 and figures["overhead"]["flow_stages_s"] > 0
    assert figures["overhead"]["project"] == str(reproduced.project) and str(reproduced.project) in text
    assert all(0 < q["bits_per_character"] < 10 for q in figures["quality"]["budgets"].values())
    lm = figures["transformers"]
    from mlproject.models.transformers_lm.training import computes_in_bf16

    bf16 = lm["training"].pop("trainer_bf16")  # the Trainer in bf16: not on a CPU that only emulates it
    assert bf16["tokens_per_s"] > 0 if computes_in_bf16() else math.isnan(bf16["tokens_per_s"])
    assert ("not measured: this CPU has no bf16" in text) != computes_in_bf16()
    assert all(side["tokens_per_s"] > 0 for key, side in lm["training"].items() if key != "precision")
    assert [r["batch"] for r in lm["generation"]] == [1, 4] and lm["pipeline"]["tokens_per_s"] > 0
    # What a training budget buys each kind: its preset trained with max_minutes, then scored.
    assert [(r["kind"], r["minutes"]) for r in lm["quality"]] == [("finetune", 0.3), ("gpt", 0.3)]
    assert all(0 < r["bits_per_byte"] < 20 and r["steps"] >= 1 for r in lm["quality"])
    assert lm["quality"][0]["zero_shot_bpb"] > 0 and "**Quality for time**" in text
    # What a user would pick instead (CTranslate2, installed for the benchmark alone), side by side.
    engine = lm["engine"]
    assert [r["batch"] for r in engine["generation"]] == [1, 4] and all(
        r["tokens_per_s"] > 0 for r in engine["generation"]
    )
    assert engine["agreement"]["prompts"] == 4 and 0 <= engine["agreement"]["same"] <= 4
    assert f"| CTranslate2 {engine['version']} (fp32) | 4 |" in text and "times its speed" in text
    # The machine's own ceilings, and every transformers throughput as a share of one.
    assert all(lm["ceilings"][key] > 0 for key in ("fp32_gflops", "bf16_gflops", "bandwidth_gb_s"))
    assert "**This machine's ceilings**" in text and text.count(" of bandwidth |") == 2  # batch 1: project, engine
    assert text.count(" compute |") == 3  # fine-tuning, and generation at batch 4: project, engine


def test_render_only_puts_the_recorded_batch_figures_before_the_closing_notes(tmp_path):
    for name in (
        "RESULTS.json",
        "RESULTS-batch.json",
        "RESULTS-fidelity.json",
        "RESULTS-workspaces.json",
        "RESULTS-sweep.json",
        "RESULTS-servers.json",
    ):
        (tmp_path / name).write_bytes((ROOT / "benchmarks" / name).read_bytes())
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--render-only", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    batch = json.loads((tmp_path / "RESULTS-batch.json").read_text())
    assert (
        text.index("## 8. Batch generation over Dask")
        < text.index("## 9. Corpus fidelity")
        < text.index("## 11. A workspace per run")
        < text.index("## 12. A sweep")
        < text.index("## 13. Starting the MLflow server")
        < text.index("## What moved the figures")
    )
    assert all(f"| {row['runner']} | {row['seconds']:.1f} |" in text for row in batch["rows"])
